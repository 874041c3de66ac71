package dev.headroom.kernels;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/** The plain reference {@link SmallMatmul}: one output at a time from the packed panels, summed in double. */
final class ScalarSmallMatmul implements SmallMatmul {
    private static final ValueLayout.OfFloat F = ValueLayout.JAVA_FLOAT_UNALIGNED;

    @Override
    public void apply(MemorySegment x, long xOffset, int ldx, int m, int k, MemorySegment packed, long packedOffset, int n,
                      MemorySegment bias, boolean accumulate, MemorySegment out, long outOffset, long rowStride, long colStride) {
        int P = SmallMatmul.panel();
        for (int i = 0; i < m; i++) {
            for (int j = 0; j < n; j++) {
                long w = packedOffset + (long) (j / P) * k * P + j % P; // W[j, 0]; W[j, c] is c·P further
                double sum = 0;
                for (int c = 0; c < k; c++) sum += (double) x.getAtIndex(F, xOffset + (long) i * ldx + c) * packed.getAtIndex(F, w + (long) c * P);
                if (bias != null) sum += bias.getAtIndex(F, j);
                long at = outOffset + i * rowStride + j * colStride;
                out.setAtIndex(F, at, (float) (accumulate ? out.getAtIndex(F, at) + sum : sum));
            }
        }
    }

    @Override
    public String name() {
        return "scalar";
    }
}
