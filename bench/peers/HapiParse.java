// bench/peers/HapiParse.java: PipeParser parse rate of HAPI HL7v2 (v2.5 structures) on the same
// lab ORU messages as the criterion bench (one message per line, segments separated by \r).
// Single thread, so messages/s per core like ours, timed with the thread's CPU clock
// (ThreadMXBean) because the machine is shared. Timed in passes after a JIT warm-up; the
// median pass is reported. Validation is measured both off (like our reader, which checks
// structure only) and on (HAPI's default context).
// Usage: java -cp 'jars/*:.' HapiParse LAB_FILE [SECONDS]
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.lang.management.ManagementFactory;
import java.lang.management.ThreadMXBean;

import ca.uhn.hl7v2.DefaultHapiContext;
import ca.uhn.hl7v2.HapiContext;
import ca.uhn.hl7v2.parser.PipeParser;
import ca.uhn.hl7v2.validation.impl.ValidationContextFactory;

public class HapiParse {
    public static void main(String[] args) throws Exception {
        String text = new String(Files.readAllBytes(Paths.get(args[0])), StandardCharsets.UTF_8);
        double seconds = args.length > 1 ? Double.parseDouble(args[1]) : 5.0;
        List<String> msgs = new ArrayList<>();
        for (String line : text.split("\n")) {
            if (!line.trim().isEmpty()) msgs.add(line);
        }
        run("hapi-2.5.1-novalidation", msgs, seconds, false);
        run("hapi-2.5.1-default", msgs, seconds, true);
    }

    static final ThreadMXBean MX = ManagementFactory.getThreadMXBean();

    static long cpu() {
        return MX.getCurrentThreadCpuTime();
    }

    static void run(String name, List<String> msgs, double seconds, boolean validate) {
        try {
            HapiContext ctx = new DefaultHapiContext();
            if (!validate) ctx.setValidationContext(ValidationContextFactory.noValidation());
            PipeParser parser = ctx.getPipeParser();
            long sink = 0;
            // JIT warm-up: a few seconds' worth of parses, not timed.
            long warm = cpu() + 2_000_000_000L;
            while (cpu() < warm) {
                for (String m : msgs) sink += parser.parse(m).getName().length();
            }
            List<Double> rates = new ArrayList<>();
            long end = cpu() + (long) (seconds * 1e9);
            while (cpu() < end || rates.size() < 3) {
                long t = cpu();
                long n = 0;
                while (cpu() - t < (long) (seconds * 1e9 / 5)) {
                    for (String m : msgs) sink += parser.parse(m).getName().length();
                    n += msgs.size();
                }
                rates.add(n / ((cpu() - t) / 1e9));
            }
            List<Double> sorted = new ArrayList<>(rates);
            Collections.sort(sorted);
            StringBuilder rs = new StringBuilder();
            for (double r : rates) rs.append(rs.length() > 0 ? "," : "").append(Math.round(r));
            System.out.println("peer: name=" + name + " version=2.5.1 rate=" + Math.round(sorted.get(sorted.size() / 2))
                    + " rounds=" + rs + " sink=" + (sink % 10));
        } catch (Exception e) {
            System.out.println("peer: name=" + name + " error=" + String.valueOf(e).replace('\n', ' '));
        }
    }
}
