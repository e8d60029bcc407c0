package io.fjord.clients;

import java.io.File;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.function.BooleanSupplier;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * One real `fjord serve` process for the whole JVM ($FJORD_BIN, every
 * listener on an ephemeral port, data in a temporary directory), stopped
 * with SIGTERM when the JVM exits. Tests use their own topic and group
 * names, so they share it.
 *
 * With $FJORD_PEER set (by `scripts/peers test`), the same tests run
 * against real Apache Kafka, RocketMQ and RabbitMQ instead: it names their
 * addresses as `name=host:port` pairs (`kafka`, `rocketmq_namesrv`,
 * `rocketmq_broker`, `rocketmq_grpc`, `amqp`) plus `cluster` and
 * `broker_name`.
 */
public final class FjordBroker {
    private static FjordBroker instance;

    private final Process process;
    private final String ready;

    private FjordBroker(Process process, String ready) {
        this.process = process;
        this.ready = ready;
    }

    /** The shared broker, started on first use. */
    public static synchronized FjordBroker get() {
        String peer = System.getenv("FJORD_PEER");
        if (instance == null && peer != null && !peer.isEmpty()) {
            StringBuilder json = new StringBuilder("{");
            for (String pair : peer.split(",")) {
                String[] kv = pair.split("=", 2);
                json.append('"').append(kv[0].trim()).append("\":\"").append(kv[1].trim()).append("\",");
            }
            instance = new FjordBroker(null, json.append("}").toString());
            if (peer.contains("rocketmq_namesrv=")) {
                instance.awaitPeerRoutes();
            }
        }
        if (instance == null) {
            try {
                instance = start();
            } catch (IOException | InterruptedException e) {
                throw new IllegalStateException("cannot start fjord: " + e, e);
            }
        }
        return instance;
    }

    private static FjordBroker start() throws IOException, InterruptedException {
        String bin = System.getenv("FJORD_BIN");
        if (bin == null || bin.isEmpty()) {
            throw new IllegalStateException("FJORD_BIN must name the fjord binary (scripts/test-java-clients sets it)");
        }
        Path dir = Files.createTempDirectory("fjord-java");
        Path readyFile = dir.resolve("ready.json");
        ProcessBuilder pb = serve(bin, dir.resolve("data"), readyFile);
        Map<String, String> env = pb.environment();
        // Quick check-backs and retries, so transaction and retry tests
        // finish in seconds (defaults: 6 s / 60 s, 10 s back-off).
        env.put("FJORD_ROCKETMQ__TRANSACTION_TIMEOUT_MS", "1000");
        env.put("FJORD_ROCKETMQ__TRANSACTION_CHECK_INTERVAL_MS", "1000");
        env.put("FJORD_MESSAGING__RETRY_BACKOFF_MS", "1000");
        pb.redirectError(new File(dir.toFile(), "fjord.log"));
        Process p = pb.start();
        Instant deadline = Instant.now().plus(Duration.ofSeconds(60));
        while (!Files.exists(readyFile)) {
            if (!p.isAlive()) {
                throw new IllegalStateException("fjord exited: " + Files.readString(dir.resolve("fjord.log")));
            }
            if (Instant.now().isAfter(deadline)) {
                p.destroyForcibly();
                throw new IllegalStateException("fjord did not become ready in 60 s");
            }
            Thread.sleep(20);
        }
        FjordBroker b = new FjordBroker(p, Files.readString(readyFile));
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            p.destroy();
            try {
                p.waitFor(20, TimeUnit.SECONDS);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }));
        return b;
    }

    /**
     * `fjord serve` with its data in `data`, every listener on an ephemeral
     * loopback port (the bound addresses go to `readyFile`), its stdout
     * discarded.
     */
    static ProcessBuilder serve(String bin, Path data, Path readyFile) {
        ProcessBuilder pb = new ProcessBuilder(bin, "serve", "--data-dir", data.toString(), "--ready-file", readyFile.toString());
        Map<String, String> env = pb.environment();
        for (String l : new String[] {"HTTP", "KAFKA", "ROCKETMQ_NAMESRV", "ROCKETMQ_BROKER", "ROCKETMQ_GRPC", "AMQP", "AMQP_MANAGEMENT"}) {
            env.put("FJORD_LISTENERS__" + l + "__BIND", "127.0.0.1:0");
        }
        env.putIfAbsent("RUST_LOG", "warn");
        pb.redirectOutput(ProcessBuilder.Redirect.DISCARD);
        return pb;
    }

    /**
     * A freshly started RocketMQ broker registers its topics with the name
     * server shortly after its port opens; producers of new topics need
     * the route of `TBW102` from then on.
     */
    private void awaitPeerRoutes() {
        org.apache.rocketmq.tools.admin.DefaultMQAdminExt admin = new org.apache.rocketmq.tools.admin.DefaultMQAdminExt();
        admin.setNamesrvAddr(namesrv());
        admin.setInstanceName(unique("peer_wait"));
        try {
            admin.start();
            await(Duration.ofSeconds(60), "the peer broker's TBW102 route", () -> {
                try {
                    return !admin.examineTopicRouteInfo("TBW102").getQueueDatas().isEmpty();
                } catch (Exception e) {
                    return false;
                }
            });
        } catch (Exception e) {
            throw new IllegalStateException("the peer RocketMQ broker never registered: " + e, e);
        } finally {
            admin.shutdown();
        }
    }

    /** The address a listener is bound to (`kafka`, `rocketmq_namesrv`, ...). */
    public String addr(String listener) {
        Matcher m = Pattern.compile("\"" + Pattern.quote(listener) + "\"\\s*:\\s*\"([^\"]+)\"").matcher(ready);
        if (!m.find()) {
            throw new IllegalStateException("no listener " + listener + " in " + ready);
        }
        return m.group(1);
    }

    /** The AMQP 0-9-1 listener as host and port. */
    public String[] amqp() {
        String a = addr("amqp");
        int i = a.lastIndexOf(':');
        return new String[] {a.substring(0, i), a.substring(i + 1)};
    }

    public String namesrv() {
        return addr("rocketmq_namesrv");
    }

    public String kafka() {
        return addr("kafka");
    }

    /** Whether this is Fjord (and not a peer broker). */
    public boolean isFjord() {
        return process != null;
    }

    /** The RocketMQ cluster name routes and `clusterList` show. */
    public String clusterName() {
        return isFjord() ? "fjord" : addr("cluster");
    }

    /** The RocketMQ broker name routes show. */
    public String brokerName() {
        return isFjord() ? "broker-0" : addr("broker_name");
    }

    /** Polls `condition` every 20 ms until it holds; fails after `timeout`. */
    public static void await(Duration timeout, String what, BooleanSupplier condition) throws InterruptedException {
        Instant deadline = Instant.now().plus(timeout);
        while (!condition.getAsBoolean()) {
            if (Instant.now().isAfter(deadline)) {
                throw new AssertionError("timed out after " + timeout + " waiting for " + what);
            }
            Thread.sleep(20);
        }
    }

    /** A name unique to this JVM run, for topics and groups. */
    public static String unique(String prefix) {
        return prefix + "_" + Long.toHexString(System.nanoTime());
    }
}
