package dev.headroom.attention;

import dev.headroom.tensor.Matrix;

/**
 * Where the attend stage reads keys and values, whatever stores them: for batch element b and
 * key/value head g, Kᵀ_g and Vᵀ_g as (d, n_k) views, features × tokens. A whole forward hands out
 * row ranges of its projection buffer; a KV cache hands out its own views.
 */
public interface KeyValues {
    /** Kᵀ of key/value head g for batch element b: (d, n_k). */
    Matrix keysT(int b, int g);

    /** Vᵀ of key/value head g for batch element b: (d, n_k). */
    Matrix valuesT(int b, int g);

    /**
     * Keys and values of a projection buffer: Kᵀ and Vᵀ are (G·d, B·n_k), head g in rows
     * [g·d, (g+1)·d), batch element b in columns [b·n_k, (b+1)·n_k).
     */
    static KeyValues projected(Matrix kT, Matrix vT, int headDim, int keys) {
        return new KeyValues() {
            @Override
            public Matrix keysT(int b, int g) {
                return kT.rowRange(g * headDim, (g + 1) * headDim).colRange(b * keys, (b + 1) * keys);
            }

            @Override
            public Matrix valuesT(int b, int g) {
                return vT.rowRange(g * headDim, (g + 1) * headDim).colRange(b * keys, (b + 1) * keys);
            }
        };
    }
}
