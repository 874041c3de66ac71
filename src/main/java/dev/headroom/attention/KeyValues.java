package dev.headroom.attention;

import dev.headroom.tensor.Matrix;

/**
 * Where the attend stage reads keys and values, whatever stores them: for batch element b and
 * key/value head g, Kᵀ_g as a (d, n_k) view (features × tokens) and V_g either as (n_k, d) rows
 * or transposed, (d, n_k). A whole forward hands out row ranges of its projection buffer (Vᵀ);
 * a KV cache hands out what it gathered from its blocks (V by rows, which its blocks store).
 */
public interface KeyValues {
    /** Kᵀ of key/value head g for batch element b: (d, n_k). */
    Matrix keysT(int b, int g);

    /** V of key/value head g for batch element b: (n_k, d), or (d, n_k) when {@link #valuesTransposed()}. */
    Matrix values(int b, int g);

    /** Whether {@link #values} are Vᵀ, (d, n_k). */
    boolean valuesTransposed();

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
            public Matrix values(int b, int g) {
                return vT.rowRange(g * headDim, (g + 1) * headDim).colRange(b * keys, (b + 1) * keys);
            }

            @Override
            public boolean valuesTransposed() {
                return true;
            }
        };
    }

    /**
     * Keys and values of one sequence gathered from a KV cache: Kᵀ (G·d, n_k) and V (n_k, G·d),
     * head g in rows (Kᵀ) or columns (V) [g·d, (g+1)·d). Batch element 0 only.
     */
    static KeyValues gathered(Matrix kT, Matrix v, int headDim) {
        return new KeyValues() {
            @Override
            public Matrix keysT(int b, int g) {
                return kT.rowRange(g * headDim, (g + 1) * headDim);
            }

            @Override
            public Matrix values(int b, int g) {
                return v.colRange(g * headDim, (g + 1) * headDim);
            }

            @Override
            public boolean valuesTransposed() {
                return false;
            }
        };
    }
}
