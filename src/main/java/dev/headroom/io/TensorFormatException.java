package dev.headroom.io;

import java.io.IOException;

/** A tensor file (.npy, .safetensors, .onnx) is missing, malformed or of an unsupported kind. */
public final class TensorFormatException extends IOException {
    public TensorFormatException(String message) {
        super(message);
    }

    public TensorFormatException(String message, Throwable cause) {
        super(message, cause);
    }
}
