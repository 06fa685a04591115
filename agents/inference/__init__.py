"""The inference agent: consumer-group workers that batch OIP requests through onnxruntime."""
