"""Camera decoding: one ``CameraDecoder`` per camera turns a URL into sampled, letterboxed frames.

Public API (import from the modules; this package imports nothing, so ``import decoders.config``
stays light):

- ``decoders.factory.make_camera_source(spec, model_input, keep_full_frame=False, *, backend="cpu")``
- ``decoders.camera_decoder.CameraDecoder(spec, model_input, keep_full_frame=False, clock=None)``:
  ``run(emit, stop)``, ``health() -> decoders.health.DecoderHealth``
- ``decoders.nvdec.NvdecCameraDecoder``: the same on NVDEC (PyNvVideoCodec, optional)
- pure policies: ``decoders.sampling`` (by presentation time), ``decoders.backoff`` (reconnect delays),
  ``decoders.state`` (allowed state transitions); ``decoders.clock.Clock`` for tests.
"""
