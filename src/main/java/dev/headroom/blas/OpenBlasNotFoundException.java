package dev.headroom.blas;

/** OpenBLAS could not be found or loaded; the message says what was tried and what to install. */
public final class OpenBlasNotFoundException extends IllegalStateException {
    public OpenBlasNotFoundException(String message) {
        super(message);
    }

    public OpenBlasNotFoundException(String message, Throwable cause) {
        super(message, cause);
    }
}
