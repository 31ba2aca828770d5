"""Where ``MetricsConfig`` lived before it moved to :mod:`mald_nerfstudio.metrics.inpainting`: a run's config.yml
names its classes by module (``!!python/object:mald_nerfstudio.eval.metrics.MetricsConfig``), so runs trained
before the move still load in ``ns-eval`` and ``ns-viewer``."""

from mald_nerfstudio.metrics.inpainting import InpaintingMetrics, MetricsConfig

__all__ = ["InpaintingMetrics", "MetricsConfig"]
