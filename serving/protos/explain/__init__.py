"""Generated gRPC stubs and the .proto sources of the explain.v1 API."""
