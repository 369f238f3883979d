"""Where int8 loses accuracy, and int8 models that keep chosen layers in float.

Per-tensor quantization error for TFLite full int8 (LiteRT's QuantizationDebugger) and ONNX QDQ
int8 (ONNX Runtime's qdq_loss_debug), each tensor mapped back to the Keras layer that made it;
builders that keep some layers in float; and the search that picks those layers one at a time.
Nothing here imports TensorFlow or ONNX Runtime until a function needs it.
"""
