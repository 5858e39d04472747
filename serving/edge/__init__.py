"""The edge server: TF Serving's REST and gRPC prediction API over ONNX Runtime or SavedModels.

`python -m serving.edge exports/` serves every model under the export base path
(see `serving.edge.server.main`). The ONNX path imports no TensorFlow.
"""
