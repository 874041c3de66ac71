package dev.headroom.sparse;

/** What a tile of (query rows × keys) holds under a pattern. */
public enum TileKind {
    /** No pair is allowed: the tile is skipped, no work at all. */
    EMPTY,
    /** Every pair is allowed: the tile runs unmasked. */
    FULL,
    /** Some pairs are allowed: the tile runs and is masked per element. */
    PARTIAL;

    public TileKind or(TileKind o) {
        if (this == FULL || o == FULL) return FULL;
        if (this == EMPTY && o == EMPTY) return EMPTY;
        return PARTIAL;
    }

    public TileKind and(TileKind o) {
        if (this == EMPTY || o == EMPTY) return EMPTY;
        if (this == FULL && o == FULL) return FULL;
        return PARTIAL;
    }
}
