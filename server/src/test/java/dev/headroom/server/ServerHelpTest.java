package dev.headroom.server;

import dev.headroom.cli.HelpText;
import org.junit.jupiter.api.Test;
import picocli.CommandLine;

import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;

/** {@code serve --help} and {@code serve-bench --help} print without picocli's "Could not format" warning. */
class ServerHelpTest {
    @Test
    void everyHelpFormats() {
        assertEquals(List.of(), HelpText.unformattable(new CommandLine(new ServerMain())));
    }
}
