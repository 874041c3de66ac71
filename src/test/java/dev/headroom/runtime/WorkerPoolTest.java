package dev.headroom.runtime;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicIntegerArray;
import java.util.concurrent.locks.LockSupport;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The pool's contract under both waiting policies: every task once, on a worker of the call,
 * failures after every worker stopped; a lost wake-up would hang a call (the timeout).
 */
@Timeout(60)
class WorkerPoolTest {
    @ParameterizedTest
    @EnumSource(WorkerPool.Waiting.class)
    void everyTaskRunsExactlyOnceOnAWorkerOfTheCall(WorkerPool.Waiting waiting) throws Exception {
        try (WorkerPool pool = new WorkerPool(3)) {
            pool.setWaiting(waiting);
            for (int count = 1; count <= 40; count++) {
                AtomicIntegerArray runs = new AtomicIntegerArray(count);
                AtomicBoolean badWorker = new AtomicBoolean();
                int workers = Math.min(3, count);
                for (int round = 0; round < 25; round++) {
                    pool.run(count, (task, worker) -> {
                        runs.incrementAndGet(task);
                        if (worker < 0 || worker >= workers) badWorker.set(true);
                    });
                    if (round % 5 == 4) Thread.sleep(1); // past the spin window now and then: helpers park and are woken
                }
                for (int t = 0; t < count; t++) assertEquals(25, runs.get(t), "task " + t + " of " + count + " (" + waiting + ")");
                assertFalse(badWorker.get(), "a worker index outside [0, " + workers + ") for " + count + " tasks");
            }
        }
    }

    @ParameterizedTest
    @EnumSource(WorkerPool.Waiting.class)
    void aFailureIsRethrownOnlyAfterEveryWorkerStopped(WorkerPool.Waiting waiting) {
        try (WorkerPool pool = new WorkerPool(2)) {
            pool.setWaiting(waiting);
            AtomicIntegerArray running = new AtomicIntegerArray(1);
            IllegalStateException e = assertThrows(IllegalStateException.class, () -> pool.run(8, (task, worker) -> {
                running.incrementAndGet(0);
                try {
                    if (task == 0) throw new IllegalStateException("task 0 failed");
                    busy(200_000);
                } finally {
                    running.decrementAndGet(0);
                }
            }));
            assertEquals("task 0 failed", e.getMessage());
            assertEquals(0, running.get(0), "a worker still ran a task after run() returned");
        }
    }

    @Test
    void thePolicyCanChangeWhileCallsRun() throws Exception {
        try (WorkerPool pool = new WorkerPool(2)) {
            AtomicBoolean stop = new AtomicBoolean();
            Thread flipper = Thread.ofPlatform().start(() -> {
                for (int i = 0; !stop.get(); i++) {
                    pool.setWaiting(WorkerPool.Waiting.values()[i % 2]);
                    LockSupport.parkNanos(20_000); // a few flips per call, without taking a core from the pool
                }
            });
            try {
                AtomicIntegerArray runs = new AtomicIntegerArray(16);
                for (int round = 0; round < 2000; round++) pool.run(16, (task, worker) -> runs.incrementAndGet(task));
                for (int t = 0; t < 16; t++) assertEquals(2000, runs.get(t), "task " + t);
            } finally {
                stop.set(true);
                flipper.join();
            }
        }
    }

    @Test
    void spinIsTheDefaultAndNoPolicyIsRefused() {
        try (WorkerPool pool = new WorkerPool(2)) {
            assertSame(WorkerPool.Waiting.SPIN, pool.waiting());
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> pool.setWaiting(null));
            assertTrue(e.getMessage().contains("waiting policy"), e.getMessage());
            pool.setWaiting(WorkerPool.Waiting.YIELD);
            assertSame(WorkerPool.Waiting.YIELD, pool.waiting());
        }
    }

    private static void busy(long nanos) {
        long end = System.nanoTime() + nanos;
        while (System.nanoTime() < end) Thread.onSpinWait();
    }
}
