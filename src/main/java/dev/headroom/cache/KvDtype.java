package dev.headroom.cache;

/** How a KV cache stores keys and values. */
public enum KvDtype {
    /** IEEE float32: exact. */
    F32(4),
    /** IEEE float16 (binary16), round to nearest even: 11 significant bits, |x| up to 65504. */
    F16(2),
    /**
     * Signed 8-bit integers with one float scale per token and head (for K and for V): x ≈ q·s,
     * s = max|x| / 127 over the head's d features, q = round(x / s).
     */
    INT8(1);

    private final int bytes;

    KvDtype(int bytes) {
        this.bytes = bytes;
    }

    /** Bytes per stored element (scales not included). */
    public int bytes() {
        return bytes;
    }

    /** Parses f32, f16, int8 (any case). */
    public static KvDtype parse(String s) {
        return switch (s.trim().toLowerCase(java.util.Locale.ROOT)) {
            case "f32", "float32", "fp32" -> F32;
            case "f16", "float16", "fp16" -> F16;
            case "int8", "i8", "q8" -> INT8;
            default -> throw new IllegalArgumentException("KV dtype must be f32, f16 or int8, got '" + s + "'");
        };
    }
}
