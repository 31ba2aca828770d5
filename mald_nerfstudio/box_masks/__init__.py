"""Masks for every view from one 3D box around the object (``mald-nerf-masks``), instead of drawing them.

A side branch before the data flow (docs/architecture.md): it reads a capture, trains a quick reconstruction with
the object present, and writes a scene folder the parsers read. One module per step:

- ``box.py``: the box, as nerfstudio's viewer shows, prints and saves its crop box;
- ``scene.py``: reading either layout without writing to it, the reconstruction's scale, the output's files;
- ``reconstruction.py``: training or reusing the reconstruction (``mald-nerf-masks-recon``) and loading it;
- ``masks.py``: depth inside the box to a mask per view, cleaning, checks and the preview;
- ``cli.py``: the command.
"""
