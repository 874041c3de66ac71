package dev.headroom.cli;

import org.junit.jupiter.api.Test;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Every {@code --help} of {@code bin/headroom} prints without picocli's "Could not format" warning. */
class HelpTextTest {
    @Test
    void everyCommandsHelpFormats() {
        assertEquals(List.of(), HelpText.unformattable(new CommandLine(new Main())));
    }

    @Command(name = "bad", description = "Within 5 % of the median%n", subcommands = Bad.Sub.class)
    static final class Bad {
        @Option(names = "--fine", description = "Fine: 5 %% and a break%n")
        int fine;

        @Command(name = "sub")
        static final class Sub {
            @Option(names = "--split", description = "80/10/10 % from train/dev/test")
            int split;
        }
    }

    /** The check finds a bare % in a command's description and in a subcommand's option, and passes %% and %n. */
    @Test
    void itNamesTheCommandAndOptionOfEachBareSign() {
        List<String> problems = HelpText.unformattable(new CommandLine(new Bad()));
        assertEquals(2, problems.size(), problems.toString());
        assertTrue(problems.get(0).startsWith("bad description: "), problems.get(0));
        assertTrue(problems.get(1).startsWith("bad sub --split: ") && problems.get(1).contains("80/10/10 % from"), problems.get(1));
    }
}
