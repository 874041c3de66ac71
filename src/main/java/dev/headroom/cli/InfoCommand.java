package dev.headroom.cli;

import dev.headroom.blas.OpenBlas;
import dev.headroom.kernels.Vectors;
import picocli.CommandLine.Command;

/** {@code headroom info}: what this machine gives Headroom. */
@Command(name = "info", description = "Print the JDK, OpenBLAS configuration, threads and vector width.")
final class InfoCommand implements Runnable {
    @Override
    public void run() {
        Runtime rt = Runtime.getRuntime();
        System.out.printf("JDK              %s %s (%s)%n", System.getProperty("java.vm.vendor"),
                System.getProperty("java.runtime.version"), System.getProperty("java.home"));
        System.out.printf("OS / arch        %s %s, %d processors, max heap %d MiB%n", System.getProperty("os.name"),
                System.getProperty("os.arch"), rt.availableProcessors(), rt.maxMemory() >> 20);
        System.out.printf("OpenBLAS         %s%n", OpenBlas.path());
        System.out.printf("OpenBLAS config  %s%n", OpenBlas.config().trim());
        System.out.printf("OpenBLAS core    %s, %d threads per call, %d processors%n", OpenBlas.coreChoice(),
                OpenBlas.threads(), OpenBlas.processors());
        System.out.printf("Vector API       %s: %d-bit, %d floats per vector%n", Vectors.SPECIES,
                Vectors.SPECIES.vectorBitSize(), Vectors.lanes());
        System.out.printf("Default threads  %d (Headroom workers; each sgemm on 1 OpenBLAS thread)%n", rt.availableProcessors());
    }
}
