"""Test suite of mald-nerfstudio (a package so tests can share builders such as ``tests.tiny_ldm``)."""
