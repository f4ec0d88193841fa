"""protoc's Python code for `grpc_service.proto`: the messages of the Open Inference Protocol
v2 over gRPC (package `inference`)."""
