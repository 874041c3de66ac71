package dev.headroom.bench.ref;

import dev.headroom.attention.AttentionConfig;
import dev.headroom.attention.AttentionWeights;
import dev.headroom.bench.BenchPaths;
import dev.headroom.bench.ref.generated.attention_ref_h;
import dev.headroom.bench.ref.generated.headroom_ref_config;
import dev.headroom.bench.ref.generated.headroom_ref_weights;
import dev.headroom.blas.OpenBlas;
import dev.headroom.tensor.Tensor;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * The C reference forward of {@code native/attention_ref.c}, behind a facade that checks every
 * shape and size before the native call (the C code trusts its pointers). It reads the weights
 * of an {@link AttentionWeights} in place, through their state dict, and owns its workspace.
 *
 * <p><b>Loading.</b> The jextract bindings were generated without {@code --library}: they find
 * the symbols with {@code SymbolLookup.loaderLookup()}, so {@link #load()} must run first. It
 * loads Headroom's OpenBLAS first, then {@code libheadroom_ref.so}, whose dependency on
 * {@code libopenblas.so.0} the dynamic linker then resolves to that same, already loaded library:
 * both sides set and use one OpenBLAS thread count. The library is found at
 * <ol>
 *   <li>the path in the system property {@value #LIBRARY_PROPERTY}, if set;</li>
 *   <li>else {@code native/libheadroom_ref.so} in the build directory this class was loaded
 *       from: beside {@code target/benchmarks.jar}, or beside {@code target/classes}. That is
 *       where {@code mvn -f bench/pom.xml package} puts it, so the jar works from any working
 *       directory and in JMH's forked JVMs without a flag.</li>
 * </ol>
 *
 * <p>One call at a time: the config struct and the workspace are this object's.
 */
public final class CReference implements AutoCloseable {
    public static final String LIBRARY_PROPERTY = "headroom.ref.lib";
    static final String LIBRARY_FILE = "libheadroom_ref.so";

    private static volatile Path loadedFrom;

    private final AttentionConfig config;
    private final int threads;
    private final int block;
    /** Owns the two structs; the workspace has its own arena because it is replaced when it grows. */
    private final Arena arena = Arena.ofShared();
    /** headroom_ref_config, its n rewritten before each call. */
    private final MemorySegment configStruct;
    /** headroom_ref_weights: pointers into the caller's weight tensors. */
    private final MemorySegment weightsStruct;
    /** The segments those pointers point into, checked alive before every call. */
    private final List<MemorySegment> borrowed = new ArrayList<>();
    private Arena workspaceArena;
    /** The C workspace: headroom_ref_workspace_floats floats for the largest n so far. */
    private MemorySegment workspace = MemorySegment.NULL;

    /**
     * @param weights the layer (borrowed: its arena must stay open while this object is used)
     * @param threads OpenMP threads of the C forward
     * @param block   query rows per attention task (Headroom's {@code Options.queryBlock()})
     */
    public CReference(AttentionWeights weights, int threads, int block) {
        if (threads < 1) throw new IllegalArgumentException("threads must be >= 1, got " + threads);
        if (block < 1) throw new IllegalArgumentException("block must be >= 1, got " + block);
        load();
        this.config = weights.config();
        this.threads = threads;
        this.block = block;
        int E = config.dModel(), qw = config.queryWidth(), kw = config.kvWidth();
        Map<String, Tensor> sd = weights.stateDict();

        configStruct = headroom_ref_config.allocate(arena);
        headroom_ref_config.d_model(configStruct, E);
        headroom_ref_config.heads(configStruct, config.heads());
        headroom_ref_config.kv_heads(configStruct, config.kvHeads());
        headroom_ref_config.head_dim(configStruct, config.headDim());
        headroom_ref_config.scale(configStruct, config.scale());

        weightsStruct = headroom_ref_weights.allocate(arena);
        headroom_ref_weights.wq(weightsStruct, checked(sd, "q_proj.weight", (long) qw * E));
        headroom_ref_weights.wk(weightsStruct, checked(sd, "k_proj.weight", (long) kw * E));
        headroom_ref_weights.wv(weightsStruct, checked(sd, "v_proj.weight", (long) kw * E));
        headroom_ref_weights.wo(weightsStruct, checked(sd, "o_proj.weight", (long) E * qw));
        boolean bias = weights.hasBias();
        headroom_ref_weights.bq(weightsStruct, bias ? checked(sd, "q_proj.bias", qw) : MemorySegment.NULL);
        headroom_ref_weights.bk(weightsStruct, bias ? checked(sd, "k_proj.bias", kw) : MemorySegment.NULL);
        headroom_ref_weights.bv(weightsStruct, bias ? checked(sd, "v_proj.bias", kw) : MemorySegment.NULL);
        headroom_ref_weights.bo(weightsStruct, bias ? checked(sd, "o_proj.bias", E) : MemorySegment.NULL);
    }

    private MemorySegment checked(Map<String, Tensor> sd, String key, long floats) {
        Tensor t = sd.get(key);
        if (t == null) throw new IllegalArgumentException("state dict has no " + key + "; keys: " + sd.keySet());
        if (t.size() != floats || t.segment().byteSize() < floats * Float.BYTES) {
            throw new IllegalArgumentException(key + " " + t.shapeString() + " must hold " + floats + " floats, has "
                    + t.size() + " in a segment of " + t.segment().byteSize() + " bytes");
        }
        checkNative(key, t.segment());
        borrowed.add(t.segment());
        return t.segment();
    }

    private static void checkNative(String name, MemorySegment s) {
        if (!s.isNative()) throw new IllegalArgumentException(name + " must be off-heap, got a heap segment " + s);
        if (!s.scope().isAlive()) throw new IllegalStateException(name + " belongs to an arena that is closed");
    }

    /** y = attention(x): x and y are (n, E) or (1, n, E), the same shape. */
    public void forward(Tensor x, Tensor y) {
        long floats = prepare(x, y);
        int rc = call(x, y, floats);
        if (rc != attention_ref_h.HEADROOM_REF_OK()) {
            throw new IllegalStateException("headroom_ref_forward returned " + rc + " (" + describe(rc) + ") for n="
                    + x.dim(-2) + ", " + config + ", threads=" + threads + ", block=" + block);
        }
    }

    /**
     * The native call with the workspace claimed to be {@code missingFloats} floats smaller than
     * the C code asks for: lets {@link ReferenceCheck} see the C code refuse it. Returns the C
     * return code.
     */
    int forwardWithWorkspaceShortBy(Tensor x, Tensor y, int missingFloats) {
        long needed = prepare(x, y);
        if (missingFloats < 1 || missingFloats > needed) {
            throw new IllegalArgumentException("missingFloats must be in [1, " + needed + "], got " + missingFloats);
        }
        return call(x, y, needed - missingFloats);
    }

    /** Checks x and y, sets n and sizes the workspace; returns the floats the C code needs. */
    private long prepare(Tensor x, Tensor y) {
        int E = config.dModel();
        boolean shapeOk = (x.rank() == 2 || (x.rank() == 3 && x.dim(0) == 1)) && x.dim(-1) == E && x.dim(-2) >= 1;
        if (!shapeOk) {
            throw new IllegalArgumentException("the C reference takes x of shape (n, " + E + ") or (1, n, " + E
                    + "), got " + x.shapeString());
        }
        if (!java.util.Arrays.equals(x.shape(), y.shape())) {
            throw new IllegalArgumentException("y " + y.shapeString() + " must have the shape of x " + x.shapeString());
        }
        checkNative("x", x.segment());
        checkNative("y", y.segment());
        for (MemorySegment w : borrowed) {
            if (!w.scope().isAlive()) throw new IllegalStateException("the weights' arena was closed");
        }
        int n = x.dim(-2);
        headroom_ref_config.n(configStruct, n);
        long floats = attention_ref_h.headroom_ref_workspace_floats(configStruct, threads, block);
        if (floats <= 0) throw new IllegalStateException("the C reference refused the shape n=" + n + ", " + config);
        if (workspace.byteSize() < floats * Float.BYTES) growWorkspace(floats);
        return floats;
    }

    private int call(Tensor x, Tensor y, long workspaceFloats) {
        return attention_ref_h.headroom_ref_forward(configStruct, weightsStruct, x.segment(), y.segment(),
                workspace, workspaceFloats, threads, block);
    }

    /** The C library's description of a return code. */
    static String describe(int rc) {
        return attention_ref_h.headroom_ref_strerror(rc).reinterpret(256).getString(0);
    }

    private void growWorkspace(long floats) {
        if (workspaceArena != null) workspaceArena.close();
        workspaceArena = Arena.ofShared();
        workspace = workspaceArena.allocate(floats * Float.BYTES, 64);
    }

    /** Loads OpenBLAS (through Headroom) and then the C reference, once; returns the library's path. */
    public static Path load() {
        Path p = loadedFrom;
        if (p != null) return p;
        synchronized (CReference.class) {
            if (loadedFrom == null) {
                OpenBlas.load();
                Path lib = locate();
                System.load(lib.toString());
                loadedFrom = lib;
            }
            return loadedFrom;
        }
    }

    private static Path locate() {
        String explicit = System.getProperty(LIBRARY_PROPERTY);
        if (explicit != null && !explicit.isBlank()) {
            Path p = Path.of(explicit).toAbsolutePath();
            if (!Files.isRegularFile(p)) {
                throw new IllegalStateException("-D" + LIBRARY_PROPERTY + "=" + explicit + " is not a file");
            }
            return p;
        }
        Path p;
        try {
            p = BenchPaths.targetDirectory().resolve("native").resolve(LIBRARY_FILE);
        } catch (IllegalStateException e) {
            throw new IllegalStateException("cannot find " + LIBRARY_FILE + " beside the benchmark classes; set -D"
                    + LIBRARY_PROPERTY + " to its path", e);
        }
        if (!Files.isRegularFile(p)) {
            throw new IllegalStateException("the C reference library is not at " + p + ": build it with "
                    + "`mvn -f bench/pom.xml package`, or point -D" + LIBRARY_PROPERTY + " at " + LIBRARY_FILE);
        }
        return p;
    }

    @Override
    public void close() {
        if (workspaceArena != null) workspaceArena.close();
        workspaceArena = null;
        workspace = MemorySegment.NULL;
        arena.close();
    }
}
