package io.fjord.clients;

import java.io.File;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * A cluster of real `fjord serve` processes ($FJORD_BIN), every node a
 * controller, each with its own data directory and every client listener
 * on an ephemeral port; the internode ports are picked below the kernel's
 * ephemeral range so that no outgoing connection takes one before its node
 * binds it.
 */
public final class FjordCluster implements AutoCloseable {
    private final List<Process> processes = new ArrayList<>();
    private final List<String> ready = new ArrayList<>();

    private FjordCluster() {}

    /** Starts `n` nodes (ids 1..n) and waits until each is ready. */
    public static FjordCluster start(int n) throws IOException, InterruptedException {
        String bin = System.getenv("FJORD_BIN");
        if (bin == null || bin.isEmpty()) {
            throw new IllegalStateException("FJORD_BIN must name the fjord binary (scripts/test-java-clients sets it)");
        }
        Path dir = Files.createTempDirectory("fjord-java-cluster");
        List<Integer> ports = new ArrayList<>();
        while (ports.size() < n) {
            int p = ThreadLocalRandom.current().nextInt(20000, 32000);
            if (!ports.contains(p) && free(p)) {
                ports.add(p);
            }
        }
        StringBuilder controllers = new StringBuilder();
        for (int i = 0; i < n; i++) {
            controllers.append(i == 0 ? "" : ",").append(i + 1).append("@127.0.0.1:").append(ports.get(i));
        }
        FjordCluster c = new FjordCluster();
        Runtime.getRuntime().addShutdownHook(new Thread(c::close));
        List<Path> readyFiles = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            Path node = dir.resolve("node-" + (i + 1));
            Files.createDirectories(node);
            Path readyFile = node.resolve("ready.json");
            readyFiles.add(readyFile);
            ProcessBuilder pb = FjordBroker.serve(bin, node.resolve("data"), readyFile);
            Map<String, String> env = pb.environment();
            env.put("FJORD_NODE__ID", String.valueOf(i + 1));
            env.put("FJORD_CLUSTER__CLUSTER_ID", "fjord-java-cluster");
            env.put("FJORD_CLUSTER__CONTROLLERS", controllers.toString());
            env.put("FJORD_CLUSTER__BIND", "127.0.0.1:" + ports.get(i));
            env.put("FJORD_CLUSTER__HEARTBEAT_INTERVAL_MS", "300");
            env.put("FJORD_CLUSTER__LEASE_MS", "2000");
            env.put("FJORD_CLUSTER__ELECTION_TIMEOUT_MS", "400");
            pb.redirectError(new File(node.toFile(), "fjord.log"));
            c.processes.add(pb.start());
        }
        Instant deadline = Instant.now().plus(Duration.ofSeconds(90));
        for (int i = 0; i < n; i++) {
            Process p = c.processes.get(i);
            while (!Files.exists(readyFiles.get(i))) {
                if (!p.isAlive() || Instant.now().isAfter(deadline)) {
                    c.close();
                    Path log = dir.resolve("node-" + (i + 1)).resolve("fjord.log");
                    throw new IllegalStateException("node " + (i + 1) + " did not become ready: " + Files.readString(log));
                }
                Thread.sleep(20);
            }
            c.ready.add(Files.readString(readyFiles.get(i)));
        }
        return c;
    }

    private static boolean free(int port) {
        try (ServerSocket s = new ServerSocket()) {
            s.bind(new InetSocketAddress("127.0.0.1", port));
            return true;
        } catch (IOException e) {
            return false;
        }
    }

    /** Where node `id` (1-based) listens for `listener` (`kafka`, `rocketmq_namesrv`, ...). */
    public String addr(int id, String listener) {
        String json = ready.get(id - 1);
        Matcher m = Pattern.compile("\"" + Pattern.quote(listener) + "\"\\s*:\\s*\"([^\"]+)\"").matcher(json);
        if (!m.find()) {
            throw new IllegalStateException("no listener " + listener + " in " + json);
        }
        return m.group(1);
    }

    /** Kills node `id` (1-based) as kill -9 would; it stays down. */
    public synchronized void kill(int id) throws InterruptedException {
        Process p = processes.get(id - 1);
        p.destroyForcibly();
        p.waitFor(20, TimeUnit.SECONDS);
    }

    /** Every node's Kafka listener, comma-separated. */
    public String kafkaBootstrap() {
        List<String> all = new ArrayList<>();
        for (int i = 1; i <= ready.size(); i++) {
            all.add(addr(i, "kafka"));
        }
        return String.join(",", all);
    }

    @Override
    public synchronized void close() {
        for (Process p : processes) {
            p.destroy();
        }
        for (Process p : processes) {
            try {
                if (!p.waitFor(20, TimeUnit.SECONDS)) {
                    p.destroyForcibly();
                }
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }
        processes.clear();
    }
}
