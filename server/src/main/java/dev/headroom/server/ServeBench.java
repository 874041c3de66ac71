package dev.headroom.server;

import picocli.CommandLine.Command;

import java.util.concurrent.Callable;

/** Placeholder: written next. */
@Command(name = "serve-bench", mixinStandardHelpOptions = true, description = "Load the server and report throughput and latency.")
final class ServeBench implements Callable<Integer> {
    @Override
    public Integer call() {
        return 0;
    }
}
