package dev.headroom.kernels;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/** The plain reference {@link SmallMatmul}: one dot product at a time, summed in double. */
final class ScalarSmallMatmul implements SmallMatmul {
    private static final ValueLayout.OfFloat F = ValueLayout.JAVA_FLOAT_UNALIGNED;

    @Override
    public void apply(MemorySegment x, long xOffset, int ldx, int m, int k, MemorySegment w, long wOffset, int ldw, int n,
                      MemorySegment bias, boolean accumulate, MemorySegment out, long outOffset, long rowStride, long colStride) {
        for (int i = 0; i < m; i++) {
            for (int j = 0; j < n; j++) {
                double sum = 0;
                for (int c = 0; c < k; c++) {
                    sum += (double) x.getAtIndex(F, xOffset + (long) i * ldx + c) * w.getAtIndex(F, wOffset + (long) j * ldw + c);
                }
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
