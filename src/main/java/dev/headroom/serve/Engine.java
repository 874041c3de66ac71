package dev.headroom.serve;

import dev.headroom.cache.KvCache;
import dev.headroom.cache.KvCacheFullException;
import dev.headroom.cache.KvDtype;
import dev.headroom.generate.Decoding;
import dev.headroom.generate.Generator;
import dev.headroom.generate.StepBatch;
import dev.headroom.memory.OffHeap;
import dev.headroom.memory.TrackedArena;
import dev.headroom.model.llama.ByteTokenizer;
import dev.headroom.model.llama.DecoderWorkspace;
import dev.headroom.model.llama.LlamaConfig;
import dev.headroom.model.llama.LlamaModel;
import dev.headroom.tensor.Tensor;

import java.time.Duration;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.locks.Condition;
import java.util.concurrent.locks.ReentrantLock;
import java.util.function.Consumer;

/**
 * Continuous batching of text generation over one {@link LlamaModel} and one paged
 * {@link KvCache} (vLLM's scheduler, on one engine thread). Requests arrive from any thread
 * ({@link #submit}); the engine thread runs steps, and before each step it
 * <ol>
 *   <li>frees the cache sequences of requests cancelled since the last step (a client that went
 *       away costs at most the step that was running when it left);</li>
 *   <li>admits waiting requests, oldest first, while fewer than {@code maxRunning} run and the
 *       cache has the blocks for the admitted request's uncached prompt, plus a small reserve
 *       ({@link #WATERMARK_FRACTION}) and one block per running sequence for them to grow into
 *       (without it, a request admitted into the last free blocks is preempted again at the next
 *       step that needs a block). Each starts on the
 *       longest prefix of its prompt the cache already holds ({@link KvCache#create(int[])}):
 *       a prompt that shares a prefix with one computed earlier, even one still running,
 *       computes only the rest;</li>
 *   <li>plans the step: one token for every running sequence that is decoding, then chunks of
 *       prompts still being prefilled, oldest first, up to {@code maxPrefillTokens} prompt tokens
 *       while any sequence decodes (up to {@code maxStepTokens} tokens in all, when none does).
 *       So a long prompt is prefilled over several steps while the running streams each get a
 *       token in every one of them, none of them slower than a decode step plus one chunk
 *       (Sarathi-Serve's chunked prefill, vLLM's {@code long_prefill_token_threshold});</li>
 *   <li>reserves the step in the cache, all or nothing. When the blocks are not there, the most
 *       recently admitted sequence is preempted: its cache sequence is freed (its full blocks
 *       stay registered, so its recomputation mostly reuses them) and it goes back to the front
 *       of the queue with the tokens it has generated, to be recomputed (prompt + generated
 *       tokens prefilled again) when memory allows; its client only sees a pause. Then the step
 *       is planned again.</li>
 * </ol>
 * Then the step runs, each sequence whose pending tokens are all in samples its next token
 * ({@link Decoding}: the request's own sampler, stop strings, streaming UTF-8), and sequences
 * that end free their blocks.
 *
 * <p><b>Admission and refusal.</b> A request whose prompt leaves no room in the model's context,
 * or that could not fit in the whole cache even alone, is refused at once
 * ({@link IllegalArgumentException}). Others wait in a queue of at most {@code maxQueue} requests
 * (each can see its place, {@link Handle#queuePosition()}); when the queue is full, a new request
 * is refused with {@link QueueFullException} and nothing of it is started.
 *
 * <p><b>Listeners</b> are called on the engine thread (and {@link Listener#queued} also on the
 * thread whose submit or cancel moved the queue): they must hand the event on and return, never
 * block. A listener that throws has its request cancelled; the engine goes on.
 *
 * <p><b>Cores.</b> The model's worker threads and the threads that carry its tokens to clients
 * share the machine's cores. With the pool's default {@link dev.headroom.runtime.WorkerPool.Waiting#SPIN}
 * a woken I/O thread can wait a scheduler slice for a core; a server should call
 * {@code model.setWaiting(WorkerPool.Waiting.YIELD)} as {@code headroom serve} does (README, "Why
 * the server yields").
 *
 * <p><b>Memory.</b> The engine owns its cache, a {@link DecoderWorkspace} and a logits buffer,
 * all freed by {@link #close()}; the model is the caller's and must outlive the engine. The
 * cache's whole budget is allocated when the engine starts (as vLLM takes its share of GPU memory
 * at start): a budget the machine cannot give fails there, and no step pays for allocating and
 * zeroing a slab (a 64 MiB slab took tens of milliseconds inside a step here).
 */
public final class Engine implements AutoCloseable {
    /**
     * Admission keeps this share of the cache's blocks (at least one) free for the running
     * sequences to grow into, so that admitting a request does not at once preempt another
     * (vLLM's watermark, 1 %).
     */
    public static final double WATERMARK_FRACTION = 0.01;

    /**
     * The engine's settings.
     *
     * @param kvBudgetBytes bytes of KV cache (whole blocks)
     * @param maxQueue      requests that may wait for admission; more are refused
     * @param maxRunning    sequences in the running batch at most
     * @param maxStepTokens tokens per step at most (decode rows plus prefill chunks): bounds the
     *                      time of a step, so the latency between two tokens of a running stream,
     *                      against how fast new prompts are taken in
     * @param maxPrefillTokens prompt tokens per step at most while any sequence decodes: the chunk
     *                      a step adds to the decode rows, so what a new prompt costs every running
     *                      stream's next token (within maxStepTokens: a larger value acts as
     *                      maxStepTokens minus the decode rows)
     * @param blockSize     tokens per cache block
     * @param kvDtype       how keys and values are stored
     */
    public record Config(long kvBudgetBytes, int maxQueue, int maxRunning, int maxStepTokens, int maxPrefillTokens, int blockSize,
                         KvDtype kvDtype) {
        public Config {
            if (maxPrefillTokens < 1) throw new IllegalArgumentException("max prefill tokens per step must be >= 1, got " + maxPrefillTokens);
            if (kvBudgetBytes <= 0) throw new IllegalArgumentException("the KV budget must be > 0 bytes, got " + kvBudgetBytes);
            if (maxQueue < 0) throw new IllegalArgumentException("max queue must be >= 0, got " + maxQueue);
            if (maxRunning < 1) throw new IllegalArgumentException("max running sequences must be >= 1, got " + maxRunning);
            if (maxStepTokens < maxRunning) {
                throw new IllegalArgumentException("max step tokens (" + maxStepTokens + ") must be at least max running sequences ("
                        + maxRunning + "): every running sequence decodes one token per step");
            }
            if (blockSize < 1) throw new IllegalArgumentException("block size must be >= 1, got " + blockSize);
            if (kvDtype == null) throw new IllegalArgumentException("the KV dtype must be given");
        }

        /**
         * 2 GiB of float32 cache in blocks of 16, 256 waiting, 64 running, 128 tokens per step, 32
         * prompt tokens per step beside decoding streams. On a CPU a step's time grows with its
         * tokens, so the caps bound the time between two tokens of a running stream. Measured with
         * serve-bench at 32 streams (README, server workers yielding): with prompt chunks of up to
         * 96 tokens a fifth of the steps carried one and set the p99 inter-token latency (14.2 and
         * 15.3 ms in two runs); chunks of 32 gave 11.1–12.3 ms in three, at the same throughput.
         * 32 prompt tokens per step take in 32 × ~150 steps/s, twice what 32 streams of 128-token
         * answers to 16–96-token prompts need.
         */
        public static Config defaults() {
            return new Config(2L << 30, 256, 64, 128, 32, Generator.BLOCK_SIZE, KvDtype.F32);
        }

        public Config withKvBudget(long bytes) {
            return new Config(bytes, maxQueue, maxRunning, maxStepTokens, maxPrefillTokens, blockSize, kvDtype);
        }

        public Config withMaxQueue(int n) {
            return new Config(kvBudgetBytes, n, maxRunning, maxStepTokens, maxPrefillTokens, blockSize, kvDtype);
        }

        public Config withMaxRunning(int n) {
            return new Config(kvBudgetBytes, maxQueue, n, maxStepTokens, maxPrefillTokens, blockSize, kvDtype);
        }

        public Config withMaxStepTokens(int n) {
            return new Config(kvBudgetBytes, maxQueue, maxRunning, n, maxPrefillTokens, blockSize, kvDtype);
        }

        public Config withMaxPrefillTokens(int n) {
            return new Config(kvBudgetBytes, maxQueue, maxRunning, maxStepTokens, n, blockSize, kvDtype);
        }

        public Config withBlockSize(int tokens) {
            return new Config(kvBudgetBytes, maxQueue, maxRunning, maxStepTokens, maxPrefillTokens, tokens, kvDtype);
        }

        public Config withKvDtype(KvDtype dtype) {
            return new Config(kvBudgetBytes, maxQueue, maxRunning, maxStepTokens, maxPrefillTokens, blockSize, dtype);
        }
    }

    /** What happens to one request, told as it happens (see the class comment on threads). */
    public interface Listener {
        /** The request waits; {@code position} requests are ahead of it (0: it is next). Told on submit and on every change. */
        default void queued(int position) {}

        /** The request was admitted: its prompt goes through the model from the next step on. */
        default void started() {}

        /** It sampled {@code token}, which releases {@code text} (often ""; token −1: text held back, released at the end). */
        void token(int token, String text);

        /** It ended: its tokens, text and why. */
        void finished(Generator.Output output, Usage usage);

        /** It could not be completed: the engine closed, or its step failed. Its cache memory is freed. */
        void failed(RuntimeException error);
    }

    /**
     * A request's counts.
     *
     * @param promptTokens       tokens of its prompt
     * @param completionTokens   tokens it generated
     * @param cachedPromptTokens prompt tokens found in the cache when it was first admitted (not computed)
     * @param preemptions        times it was preempted and recomputed
     */
    public record Usage(int promptTokens, int completionTokens, int cachedPromptTokens, int preemptions) {}

    public enum State { QUEUED, RUNNING, FINISHED, CANCELLED, FAILED }

    /**
     * One step, as the engine thread saw it after running it.
     *
     * @param step          its number, from 1
     * @param decodeRows    sequences that fed one token (their last sampled one)
     * @param prefillTokens prompt (or recomputed) tokens fed in chunks
     * @param sampled       tokens sampled
     * @param running       sequences running after the step (ended ones removed)
     * @param waiting       requests waiting after the step
     * @param preempted     sequences preempted to make room for this step
     * @param nanos         wall time of the step (planning, forward, sampling, handing the tokens to their listeners)
     * @param forwardNanos  wall time of its forward through the model, part of {@code nanos}
     * @param cache         the cache's accounting after the step
     */
    public record StepInfo(long step, int decodeRows, int prefillTokens, int sampled, int running, int waiting, int preempted,
                           long nanos, long forwardNanos, KvCache.Stats cache) {}

    /**
     * The engine's counts at one moment.
     *
     * @param waiting           requests in the queue (preempted ones included)
     * @param running           sequences in the running batch
     * @param submitted         requests accepted since the start
     * @param refused           requests refused because the queue was full
     * @param finished          requests that ended normally
     * @param cancelled         requests cancelled
     * @param failed            requests that failed
     * @param preemptions       sequences preempted
     * @param generatedTokens   tokens sampled
     * @param computedTokens    tokens put through the model (prompts, recomputations, decode)
     * @param reusedTokens      prompt tokens found in the cache at admission
     * @param steps             steps run
     * @param cache             the cache's accounting
     */
    public record Snapshot(int waiting, int running, long submitted, long refused, long finished, long cancelled, long failed,
                           long preemptions, long generatedTokens, long computedTokens, long reusedTokens, long steps,
                           KvCache.Stats cache) {}

    /** A submitted request: its state, its place in the queue, and {@link #cancel()}. */
    public final class Handle {
        private final Job job;

        private Handle(Job job) {
            this.job = job;
        }

        /**
         * Stops the request. A waiting one leaves the queue at once; a running one is freed before
         * the engine's next step. Its listener hears nothing more (but events already on their way).
         * Idempotent; a no-op once it has ended.
         */
        public void cancel() {
            Engine.this.cancel(job);
        }

        public State state() {
            return job.state;
        }

        /** Requests ahead of it in the queue (0: next), or −1 when it is not waiting. */
        public int queuePosition() {
            return Engine.this.position(job);
        }

        /** Times it was preempted so far. */
        public int preemptions() {
            return job.preemptions;
        }
    }

    /** One request: its decoding state and where it is. Fields other than state and cancelled belong to the engine thread. */
    private static final class Job {
        final Decoding decoding;
        final Listener listener;
        final Decoding.Sink sink;
        volatile State state = State.QUEUED;
        volatile boolean cancelled;
        /** Its cache sequence while running, else 0 (ids start at 1). */
        int cacheId;
        /** Prompt tokens reused at its first admission, −1 before it. */
        int reused = -1;
        int preemptions;

        Job(Decoding decoding, Listener listener) {
            this.decoding = decoding;
            this.listener = listener;
            this.sink = listener::token;
        }
    }

    private final LlamaModel model;
    private final LlamaConfig modelConfig;
    private final ByteTokenizer tokenizer;
    private final Config config;
    private final KvCache cache;
    private final TrackedArena arena = TrackedArena.ofShared();
    private final DecoderWorkspace workspace = new DecoderWorkspace();
    /** (maxRunning, V): one row of logits per sequence that samples in a step. */
    private final Tensor logitBuffer;
    private final float[] row;
    private final int watermark;

    private final ReentrantLock lock = new ReentrantLock();
    /** Signalled when work arrives (a request, a cancellation) and when the engine closes. */
    private final Condition work = lock.newCondition();
    /** Signalled when nothing waits and nothing runs. */
    private final Condition idle = lock.newCondition();
    /** Preempted sequences, to be recomputed before any new request is admitted (guarded by lock). */
    private final ArrayDeque<Job> preempted = new ArrayDeque<>();
    /** New requests in arrival order (guarded by lock). */
    private final ArrayDeque<Job> waiting = new ArrayDeque<>();
    /** Admitted sequences, oldest first (engine thread; its size is published in {@link #runningCount}). */
    private final List<Job> running = new ArrayList<>();
    private volatile int runningCount;
    private boolean closing;
    private final Thread thread;
    private volatile Consumer<StepInfo> stepObserver = step -> {};

    private final AtomicLong submitted = new AtomicLong(), refused = new AtomicLong(), finished = new AtomicLong(),
            cancelled = new AtomicLong(), failed = new AtomicLong(), preemptions = new AtomicLong(), generated = new AtomicLong(),
            computed = new AtomicLong(), reused = new AtomicLong(), steps = new AtomicLong();

    private Engine(LlamaModel model, ByteTokenizer tokenizer, Config config) {
        this.model = model;
        this.modelConfig = model.config();
        if (tokenizer.vocabSize() != modelConfig.vocabSize()) {
            throw new IllegalArgumentException("the tokenizer has " + tokenizer.vocabSize() + " ids, the model " + modelConfig.vocabSize());
        }
        this.tokenizer = tokenizer;
        this.config = config;
        this.cache = model.newCache(config.blockSize(), config.kvDtype(), config.kvBudgetBytes());
        try {
            cache.allocateAll(); // the whole budget now: found or refused at start, and no step pays for a slab later
            this.logitBuffer = Tensor.allocate(arena, config.maxRunning(), modelConfig.vocabSize());
        } catch (RuntimeException e) {
            cache.close();
            arena.close();
            throw e;
        }
        this.row = new float[modelConfig.vocabSize()];
        this.watermark = Math.max(1, (int) (cache.stats().capacityBlocks() * WATERMARK_FRACTION));
        this.thread = Thread.ofPlatform().name("headroom-engine").daemon(true).unstarted(this::loop);
    }

    /** An engine over {@code model} (which the caller closes after the engine), running from now on. */
    public static Engine start(LlamaModel model, ByteTokenizer tokenizer, Config config) {
        Engine e = new Engine(model, tokenizer, config);
        e.thread.start();
        return e;
    }

    public Config config() {
        return config;
    }

    public LlamaConfig modelConfig() {
        return modelConfig;
    }

    public ByteTokenizer tokenizer() {
        return tokenizer;
    }

    /** Called on the engine thread after every step (metrics, tests); must return quickly. */
    public void setStepObserver(Consumer<StepInfo> observer) {
        this.stepObserver = observer == null ? step -> {} : observer;
    }

    // ---- submitting ---------------------------------------------------------------------

    /** Submits one request; see {@link #submitAll}. */
    public Handle submit(Generator.Request request, Listener listener) {
        return submitAll(List.of(request), List.of(listener)).getFirst();
    }

    /**
     * Submits requests together (the prompts of one API call): all are queued, or none. A request
     * that cannot generate anything ({@code maxTokens} 0) finishes at once, on this thread.
     *
     * @throws IllegalArgumentException a prompt has ids outside the vocabulary, leaves no room in
     *                                  the model's context, or needs more blocks than the whole cache
     *                                  holds; or a stop string is empty
     * @throws QueueFullException       the queue has no room for all of them
     * @throws IllegalStateException    the engine is closed
     */
    public List<Handle> submitAll(List<Generator.Request> requests, List<Listener> listeners) {
        if (requests.size() != listeners.size()) {
            throw new IllegalArgumentException(requests.size() + " requests but " + listeners.size() + " listeners");
        }
        List<Job> jobs = new ArrayList<>();
        for (int i = 0; i < requests.size(); i++) {
            check(requests.get(i));
            jobs.add(new Job(new Decoding(requests.get(i), modelConfig, tokenizer), listeners.get(i)));
        }
        List<Handle> handles = new ArrayList<>();
        List<Job> queued = new ArrayList<>();
        lock.lock();
        try {
            if (closing) throw new IllegalStateException("the engine is closed");
            int queueing = 0;
            for (Job j : jobs) if (j.decoding.finishBeforeStart() == null) queueing++;
            int length = waiting.size() + preempted.size();
            if (length + queueing > config.maxQueue()) {
                refused.addAndGet(jobs.size());
                throw new QueueFullException("the server is busy: " + length + " requests are waiting for memory and the queue holds "
                        + config.maxQueue() + (queueing > 1 ? " (this call has " + queueing + " prompts)" : "") + "; retry later",
                        length, config.maxQueue());
            }
            for (Job j : jobs) {
                handles.add(new Handle(j));
                submitted.incrementAndGet();
                if (j.decoding.finishBeforeStart() != null) continue;
                waiting.addLast(j);
                queued.add(j);
            }
            if (!queued.isEmpty()) work.signalAll();
        } finally {
            lock.unlock();
        }
        for (Job j : jobs) {
            Generator.Finish early = j.decoding.finishBeforeStart();
            if (early != null) {
                j.decoding.finish(early, j.sink);
                j.state = State.FINISHED;
                finished.incrementAndGet();
                j.listener.finished(j.decoding.output(), new Usage(j.decoding.promptLength(), 0, 0, 0));
            }
        }
        for (Job j : queued) {
            int p = position(j);
            if (p >= 0) j.listener.queued(p);
        }
        return handles;
    }

    private void check(Generator.Request r) {
        int[] p = r.prompt();
        int context = modelConfig.maxPositions();
        if (p.length >= context) {
            throw new IllegalArgumentException("the prompt has " + p.length + " tokens; the model's context is " + context
                    + " tokens, which leaves no room to generate");
        }
        for (int k = 0; k < p.length; k++) {
            if (p[k] < 0 || p[k] >= modelConfig.vocabSize()) {
                throw new IllegalArgumentException("token id " + p[k] + " at " + k + " is outside the vocabulary of " + modelConfig.vocabSize());
            }
        }
        long tokens = Math.min((long) p.length + r.maxTokens(), context);
        long blocks = cache.shape().blocksFor(tokens), capacity = cache.stats().capacityBlocks();
        if (blocks > capacity) {
            throw new IllegalArgumentException("the request needs up to " + tokens + " tokens of KV cache (" + blocks + " blocks of "
                    + OffHeap.format(cache.shape().blockBytes()) + "); the whole cache holds " + capacity + " blocks");
        }
    }

    // ---- queue --------------------------------------------------------------------------

    private int position(Job job) {
        lock.lock();
        try {
            int p = 0;
            for (Job j : preempted) {
                if (j == job) return p;
                p++;
            }
            for (Job j : waiting) {
                if (j == job) return p;
                p++;
            }
            return -1;
        } finally {
            lock.unlock();
        }
    }

    /** Tells every waiting request its place (after the queue moved). Called without the lock held. */
    private void announcePositions() {
        List<Job> order;
        lock.lock();
        try {
            order = new ArrayList<>(preempted);
            order.addAll(waiting);
        } finally {
            lock.unlock();
        }
        for (int p = 0; p < order.size(); p++) {
            Job j = order.get(p);
            int position = p;
            if (j.state == State.QUEUED && j.reused < 0) safely(j, () -> j.listener.queued(position));
        }
    }

    private void cancel(Job job) {
        boolean fromQueue;
        lock.lock();
        try {
            if (job.state == State.FINISHED || job.state == State.FAILED || job.state == State.CANCELLED || job.cancelled) return;
            job.cancelled = true;
            fromQueue = waiting.remove(job) || preempted.remove(job);
            if (fromQueue) {
                job.state = State.CANCELLED;
                cancelled.incrementAndGet();
                if (waiting.isEmpty() && preempted.isEmpty() && runningCount == 0) idle.signalAll();
            } else {
                work.signalAll(); // running: the engine thread frees it before its next step
            }
        } finally {
            lock.unlock();
        }
        if (fromQueue) announcePositions();
    }

    // ---- the engine thread --------------------------------------------------------------

    private void loop() {
        try {
            while (true) {
                lock.lock();
                try {
                    while (!closing && running.isEmpty() && waiting.isEmpty() && preempted.isEmpty()) {
                        idle.signalAll();
                        work.awaitUninterruptibly();
                    }
                    if (closing) break;
                } finally {
                    lock.unlock();
                }
                retireCancelled();
                if (admit()) announcePositions();
                if (!running.isEmpty()) step();
                runningCount = running.size();
            }
        } finally {
            shutDown();
        }
    }

    /** Frees the sequences of running requests cancelled since the last step. */
    private void retireCancelled() {
        for (Iterator<Job> it = running.iterator(); it.hasNext(); ) {
            Job j = it.next();
            if (!j.cancelled) continue;
            it.remove();
            cache.free(j.cacheId);
            j.cacheId = 0;
            j.state = State.CANCELLED;
            cancelled.incrementAndGet();
        }
        runningCount = running.size();
    }

    /** Admits queued requests (preempted ones first) while the batch and the cache have room. Returns whether the queue moved. */
    private boolean admit() {
        boolean moved = false;
        while (running.size() < config.maxRunning()) {
            Job j;
            lock.lock();
            try {
                j = !preempted.isEmpty() ? preempted.peekFirst() : waiting.peekFirst();
            } finally {
                lock.unlock();
            }
            if (j == null) break;
            int[] context = j.decoding.context();
            int id = cache.create(context);
            int cachedTokens = cache.length(id);
            KvCache.Stats s = cache.stats();
            long needed = cache.shape().blocksFor(context.length) - cachedTokens / config.blockSize();
            // Room for its uncached prompt, the watermark, and one block of growth per running sequence: without the
            // last, a request admitted into the last free blocks is preempted again at the next step that needs a block.
            if (!running.isEmpty() && needed + watermark + running.size() > s.freeBlocks() + s.cachedBlocks()) {
                cache.free(id); // it waits for memory; the order of the queue stays first come, first served
                break;
            }
            lock.lock();
            try {
                if (j.cancelled) { // by cancel() since the peek (which took it out of the queue), or by a listener that threw
                    cache.free(id);
                    if (waiting.remove(j) || preempted.remove(j)) {
                        j.state = State.CANCELLED;
                        cancelled.incrementAndGet();
                    }
                    moved = true;
                    continue;
                }
                if (!preempted.remove(j)) waiting.remove(j);
                j.state = State.RUNNING;
                runningCount = running.size() + 1; // before the lock is released: awaitIdle never sees it nowhere
            } finally {
                lock.unlock();
            }
            moved = true;
            j.cacheId = id;
            j.decoding.setCached(cachedTokens);
            if (j.reused < 0) {
                j.reused = cachedTokens;
                reused.addAndGet(cachedTokens);
                safely(j, j.listener::started);
            }
            running.add(j);
        }
        runningCount = running.size();
        return moved;
    }

    /** Plans, reserves (preempting when the cache is full), runs and samples one step. */
    private void step() {
        long t0 = System.nanoTime();
        StepBatch batch;
        List<Job> in = new ArrayList<>();
        List<Integer> counts = new ArrayList<>();
        List<Job> sampling = new ArrayList<>();
        KvCache.Step reserved;
        int decodeRows, prefillTokens, preemptedNow = 0;
        while (true) {
            batch = new StepBatch();
            in.clear();
            counts.clear();
            sampling.clear();
            int budget = config.maxStepTokens();
            decodeRows = 0;
            for (Job j : running) { // decoding sequences first: each feeds its last token
                if (j.decoding.pending() != 1) continue;
                plan(batch, j, 1, in, counts, sampling);
                budget--;
                decodeRows++;
            }
            if (decodeRows > 0) budget = Math.min(budget, config.maxPrefillTokens()); // the chunk beside running streams
            for (Job j : running) { // then prefill (or recompute) chunks, oldest first
                int pending = j.decoding.pending();
                if (pending <= 1 || budget == 0) continue;
                int c = Math.min(pending, budget);
                plan(batch, j, c, in, counts, sampling);
                budget -= c;
            }
            prefillTokens = batch.tokens() - decodeRows;
            try {
                reserved = batch.reserve(cache);
                break;
            } catch (KvCacheFullException e) {
                for (int k = 0; k < in.size(); k++) in.get(k).decoding.setCached(in.get(k).decoding.cached() - counts.get(k));
                Job victim = running.getLast();
                if (running.size() == 1) { // cannot happen for requests that passed check(), but never loop on it
                    running.removeLast();
                    cache.free(victim.cacheId);
                    victim.cacheId = 0;
                    fail(victim, new IllegalStateException("the request does not fit in the KV cache: " + e.getMessage()));
                    runningCount = running.size();
                    return;
                }
                preempt(victim);
                preemptedNow++;
            }
        }
        long forward0 = System.nanoTime();
        try {
            batch.forward(model, cache, reserved, logitBuffer, workspace);
        } catch (RuntimeException e) {
            // Keys and values of this step are missing: discard, so that no half-written block is offered for reuse.
            for (Job j : in) {
                running.remove(j);
                cache.discard(j.cacheId);
                j.cacheId = 0;
                fail(j, e);
            }
            runningCount = running.size();
            return;
        }
        long forwardNanos = System.nanoTime() - forward0;
        computed.addAndGet(batch.tokens());
        for (int k = 0; k < sampling.size(); k++) {
            Job j = sampling.get(k);
            batch.logits(k, row);
            try {
                j.decoding.accept(j.decoding.sample(row), (token, text) -> {
                    if (!j.cancelled) safely(j, () -> j.sink.token(token, text));
                });
            } catch (IllegalArgumentException e) { // logits it cannot sample from (NaN, +∞): this request only
                running.remove(j);
                cache.discard(j.cacheId);
                j.cacheId = 0;
                fail(j, e);
                continue;
            }
            generated.incrementAndGet();
            if (j.decoding.finished()) {
                running.remove(j);
                cache.free(j.cacheId);
                j.cacheId = 0;
                if (j.cancelled) {
                    j.state = State.CANCELLED;
                    cancelled.incrementAndGet();
                } else {
                    j.state = State.FINISHED;
                    finished.incrementAndGet();
                    Usage u = new Usage(j.decoding.promptLength(), j.decoding.generated(), j.reused, j.preemptions);
                    safely(j, () -> j.listener.finished(j.decoding.output(), u));
                }
            }
        }
        runningCount = running.size();
        steps.incrementAndGet();
        int waitingNow;
        lock.lock();
        try {
            waitingNow = waiting.size() + preempted.size();
        } finally {
            lock.unlock();
        }
        stepObserver.accept(new StepInfo(steps.get(), decodeRows, prefillTokens, sampling.size(), running.size(), waitingNow,
                preemptedNow, System.nanoTime() - t0, forwardNanos, cache.stats()));
    }

    private static void plan(StepBatch batch, Job j, int count, List<Job> in, List<Integer> counts, List<Job> sampling) {
        boolean sample = count == j.decoding.pending();
        batch.add(j.cacheId, j.decoding.feed(count), sample);
        in.add(j);
        counts.add(count);
        if (sample) sampling.add(j);
    }

    /** Frees a running sequence's cache and puts it at the front of the queue, to be recomputed. */
    private void preempt(Job j) {
        running.remove(j);
        cache.free(j.cacheId); // its full blocks stay registered: the recomputation reuses what is not evicted by then
        j.cacheId = 0;
        j.decoding.setCached(0);
        j.preemptions++;
        preemptions.incrementAndGet();
        lock.lock();
        try {
            if (j.cancelled) { // cancelled while running: it does not go back to the queue
                j.state = State.CANCELLED;
                cancelled.incrementAndGet();
                return;
            }
            j.state = State.QUEUED;
            preempted.addFirst(j);
        } finally {
            lock.unlock();
        }
    }

    private void fail(Job j, RuntimeException e) {
        j.state = State.FAILED;
        failed.incrementAndGet();
        if (!j.cancelled) {
            try {
                j.listener.failed(e);
            } catch (RuntimeException ignored) {
                // the request has failed already; its listener's own failure adds nothing
            }
        }
    }

    /** Runs a listener call; a listener that throws has its request cancelled (the engine carries on). */
    private void safely(Job j, Runnable call) {
        try {
            call.run();
        } catch (RuntimeException e) {
            j.cancelled = true;
        }
    }

    // ---- observing and closing ----------------------------------------------------------

    public Snapshot snapshot() {
        int w;
        lock.lock();
        try {
            w = waiting.size() + preempted.size();
        } finally {
            lock.unlock();
        }
        return new Snapshot(w, runningCount, submitted.get(), refused.get(), finished.get(), cancelled.get(), failed.get(),
                preemptions.get(), generated.get(), computed.get(), reused.get(), steps.get(), cache.stats());
    }

    /** Whether the engine thread is serving: false once closed, or if it ended on an error of its own. */
    public boolean isRunning() {
        lock.lock();
        try {
            return !closing && thread.isAlive();
        } finally {
            lock.unlock();
        }
    }

    /** The cache's accounting now. */
    public KvCache.Stats cacheStats() {
        return cache.stats();
    }

    /** Waits until nothing waits and nothing runs; false when {@code timeout} passed first. */
    public boolean awaitIdle(Duration timeout) throws InterruptedException {
        long deadline = System.nanoTime() + timeout.toNanos();
        lock.lock();
        try {
            while (!(waiting.isEmpty() && preempted.isEmpty() && runningCount == 0)) {
                long left = deadline - System.nanoTime();
                if (left <= 0) return false;
                idle.awaitNanos(left);
            }
            return true;
        } finally {
            lock.unlock();
        }
    }

    /**
     * Stops the engine: the step running finishes, every request still waiting or running fails
     * ({@link Listener#failed}), and the cache, workspace and buffers are freed. Idempotent.
     */
    @Override
    public void close() {
        lock.lock();
        try {
            closing = true;
            work.signalAll();
        } finally {
            lock.unlock();
        }
        if (Thread.currentThread() != thread) {
            boolean interrupted = false;
            while (thread.isAlive()) {
                try {
                    thread.join();
                } catch (InterruptedException e) {
                    interrupted = true;
                }
            }
            if (interrupted) Thread.currentThread().interrupt();
        }
    }

    /** On the engine thread, last: fails what is left and frees the memory. */
    private void shutDown() {
        List<Job> left = new ArrayList<>(running);
        running.clear();
        runningCount = 0;
        lock.lock();
        try {
            closing = true;
            left.addAll(preempted);
            left.addAll(waiting);
            preempted.clear();
            waiting.clear();
            idle.signalAll();
        } finally {
            lock.unlock();
        }
        for (Job j : left) {
            if (j.cacheId != 0) cache.free(j.cacheId);
            j.cacheId = 0;
            fail(j, new IllegalStateException("the engine was closed before the request finished"));
        }
        workspace.close();
        arena.close();
        cache.close();
    }

    @Override
    public String toString() {
        return "Engine(" + config + ", " + cache + ")";
    }
}
