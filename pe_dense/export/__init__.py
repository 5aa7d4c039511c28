"""Export of PE-Spatial models to ONNX, torch.export and OpenVINO for robot-side runtimes (issue 10).

``feature_extractor`` builds the bare backbone as a fixed-size multi-layer feature extractor, ``artefact`` writes
one self-contained file per model (metadata inside and beside it as JSON), ``graph_checks`` walks an ONNX graph
for constructs robot runtimes cannot serve, ``fixed_nms`` holds DETA's NMS and query selection at fixed size
(the detector wrappers' building blocks). Importing this package registers nothing.
"""
