package io.fjord.bench;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.locks.LockSupport;

import org.HdrHistogram.Histogram;
import org.HdrHistogram.Recorder;
import org.apache.rocketmq.client.consumer.DefaultLitePullConsumer;
import org.apache.rocketmq.client.producer.DefaultMQProducer;
import org.apache.rocketmq.client.producer.SendResult;
import org.apache.rocketmq.client.producer.SendStatus;
import org.apache.rocketmq.common.TopicConfig;
import org.apache.rocketmq.common.message.Message;
import org.apache.rocketmq.common.message.MessageQueue;
import org.apache.rocketmq.tools.admin.DefaultMQAdminExt;

/**
 * A RocketMQ benchmark written with the 5.x remoting client, for what
 * rocketmq-example's benchmark.Producer lacks: a fixed send rate, latency
 * percentiles (HdrHistogram, send to SEND_OK, per message), a run of a
 * fixed number of messages, and a consumer that reads a backlog and stops.
 * The same program runs against Fjord and Apache RocketMQ.
 *
 * <pre>
 *   RocketMqBench produce --namesrv H:P --broker H:P --topic T --create \
 *       --messages N [--rate R] [--threads 64] [--size 100] [--queues 8] \
 *       [--label L] [--interval-ms 1000] [--broker-pid PID]
 *   RocketMqBench consume --namesrv H:P --topic T --messages N [...]
 * </pre>
 *
 * Prints one JSON line per interval ({"row":true,...}, the schema of
 * fjord-bench's --json-rows) and one aggregate line ({"aggregate":true,...}).
 */
public final class RocketMqBench {
    private final Map<String, String> opts;
    private final String label;
    private final long messages;
    private final long intervalMs;
    private final Cpu cpu;

    private RocketMqBench(Map<String, String> opts) {
        this.opts = opts;
        this.label = opts.getOrDefault("label", "");
        this.messages = Long.parseLong(require("messages"));
        this.intervalMs = Long.parseLong(opts.getOrDefault("interval-ms", "1000"));
        this.cpu = new Cpu(opts.get("broker-pid"));
    }

    public static void main(String[] args) throws Exception {
        if (args.length == 0 || !(args[0].equals("produce") || args[0].equals("consume"))) {
            System.err.println("usage: RocketMqBench produce|consume --namesrv H:P --topic T --messages N [options]");
            System.exit(64);
        }
        Map<String, String> opts = new HashMap<>();
        for (int i = 1; i < args.length; i++) {
            String key = args[i].replaceFirst("^--", "");
            boolean flag = i + 1 >= args.length || args[i + 1].startsWith("--");
            opts.put(key, flag ? "true" : args[++i]);
        }
        RocketMqBench b = new RocketMqBench(opts);
        if (args[0].equals("produce")) {
            b.produce();
        } else {
            b.consume();
        }
        System.exit(0);
    }

    private String require(String key) {
        String v = opts.get(key);
        if (v == null) {
            throw new IllegalArgumentException("--" + key + " is required");
        }
        return v;
    }

    private void createTopic(String topic, int queues) throws Exception {
        DefaultMQAdminExt admin = new DefaultMQAdminExt();
        admin.setNamesrvAddr(require("namesrv"));
        admin.setInstanceName("bench_admin_" + System.nanoTime());
        admin.start();
        try {
            admin.createAndUpdateTopicConfig(require("broker"), new TopicConfig(topic, queues, queues, 6));
            long deadline = System.currentTimeMillis() + 30_000;
            while (true) {
                try {
                    if (admin.examineTopicRouteInfo(topic).getQueueDatas().stream()
                            .mapToInt(q -> q.getWriteQueueNums()).sum() >= queues) {
                        return;
                    }
                } catch (Exception e) {
                    // no route yet
                }
                if (System.currentTimeMillis() > deadline) {
                    throw new IllegalStateException("no route for " + topic + " after 30 s");
                }
                Thread.sleep(100);
            }
        } finally {
            admin.shutdown();
        }
    }

    private void produce() throws Exception {
        String topic = require("topic");
        if (opts.containsKey("create")) {
            createTopic(topic, Integer.parseInt(opts.getOrDefault("queues", "8")));
        }
        long rate = Long.parseLong(opts.getOrDefault("rate", "0"));
        int threads = Integer.parseInt(opts.getOrDefault("threads", "64"));
        byte[] body = new byte[Integer.parseInt(opts.getOrDefault("size", "100"))];
        java.util.Arrays.fill(body, (byte) 'x');
        DefaultMQProducer producer = new DefaultMQProducer("bench_producer_" + System.nanoTime());
        producer.setNamesrvAddr(require("namesrv"));
        producer.setInstanceName("bench_" + System.nanoTime());
        producer.setSendMsgTimeout(10_000);
        producer.start();

        Recorder recorder = new Recorder(TimeUnit.SECONDS.toMicros(60), 3);
        AtomicLong next = new AtomicLong();
        AtomicLong ok = new AtomicLong();
        AtomicLong errors = new AtomicLong();
        long start = System.nanoTime();
        List<Thread> workers = new ArrayList<>();
        for (int t = 0; t < threads; t++) {
            Thread w = new Thread(() -> {
                long i;
                while ((i = next.getAndIncrement()) < messages) {
                    if (rate > 0) {
                        // Message i is due at start + i/rate: an open schedule
                        // shared by all threads, so a slow broker cannot slow it.
                        long due = start + (long) (i * 1e9 / rate);
                        long wait = due - System.nanoTime();
                        if (wait > 0) {
                            LockSupport.parkNanos(wait);
                        }
                    }
                    long t0 = System.nanoTime();
                    try {
                        SendResult r = producer.send(new Message(topic, "bench", body));
                        if (r.getSendStatus() == SendStatus.SEND_OK) {
                            ok.incrementAndGet();
                        } else {
                            errors.incrementAndGet();
                        }
                    } catch (Exception e) {
                        errors.incrementAndGet();
                    }
                    recorder.recordValue(Math.max(1, (System.nanoTime() - t0) / 1000));
                }
            }, "bench-send-" + t);
            w.start();
            workers.add(w);
        }
        Histogram total = new Histogram(TimeUnit.SECONDS.toMicros(60), 3);
        long cpu0 = cpu.ticks();
        long rowStart = start;
        long rowOk = 0;
        long rowCpu = cpu0;
        Histogram interval = null;
        while (workers.stream().anyMatch(Thread::isAlive)) {
            for (Thread w : workers) {
                w.join(Math.max(1, intervalMs - (System.nanoTime() - rowStart) / 1_000_000));
                if (System.nanoTime() - rowStart >= intervalMs * 1_000_000) {
                    break;
                }
            }
            long now = System.nanoTime();
            boolean done = workers.stream().noneMatch(Thread::isAlive);
            if (now - rowStart < intervalMs * 1_000_000 && !done) {
                continue;
            }
            interval = recorder.getIntervalHistogram(interval);
            total.add(interval);
            long okNow = ok.get();
            long cpuNow = cpu.ticks();
            double secs = (now - rowStart) / 1e9;
            System.out.println(String.format(Locale.ROOT,
                    "{\"row\":true,\"label\":\"%s\",\"phase\":\"produce\",\"t_s\":%.3f,\"pub_msgs_per_s\":%.1f,"
                            + "\"cons_msgs_per_s\":0,\"pub_latency_ms\":%s,\"broker_cores\":%s}",
                    label, (now - start) / 1e9, (okNow - rowOk) / secs, latency(interval),
                    cpu.cores(cpuNow - rowCpu, secs)));
            rowStart = now;
            rowOk = okNow;
            rowCpu = cpuNow;
        }
        double secs = (System.nanoTime() - start) / 1e9;
        long brokerTicks = cpu.ticks() - cpu0;
        System.out.println(String.format(Locale.ROOT,
                "{\"aggregate\":true,\"label\":\"%s\",\"phase\":\"produce\",\"messages\":%d,\"errors\":%d,"
                        + "\"seconds\":%.3f,\"msgs_per_s\":%.1f,\"latency_ms\":%s,\"broker_cpu_s_per_million\":%s}",
                label, ok.get(), errors.get(), secs, ok.get() / secs, latency(total),
                cpu.perMillion(brokerTicks, ok.get())));
        producer.shutdown();
    }

    private void consume() throws Exception {
        String topic = require("topic");
        DefaultLitePullConsumer consumer = new DefaultLitePullConsumer("bench_consumer_" + System.nanoTime());
        consumer.setNamesrvAddr(require("namesrv"));
        consumer.setInstanceName("bench_" + System.nanoTime());
        consumer.setPullBatchSize(32);
        consumer.setAutoCommit(false);
        consumer.start();
        List<MessageQueue> queues = new ArrayList<>(consumer.fetchMessageQueues(topic));
        consumer.assign(queues);
        for (MessageQueue q : queues) {
            consumer.seek(q, 0);
        }
        long start = System.nanoTime();
        long deadline = start + Duration.ofSeconds(Long.parseLong(opts.getOrDefault("timeout-s", "300"))).toNanos();
        long cpu0 = cpu.ticks();
        long count = 0;
        long rowStart = start;
        long rowCount = 0;
        long rowCpu = cpu0;
        while (count < messages && System.nanoTime() < deadline) {
            count += consumer.poll(200).size();
            long now = System.nanoTime();
            if (now - rowStart >= intervalMs * 1_000_000 || count >= messages) {
                double secs = (now - rowStart) / 1e9;
                long cpuNow = cpu.ticks();
                System.out.println(String.format(Locale.ROOT,
                        "{\"row\":true,\"label\":\"%s\",\"phase\":\"consume\",\"t_s\":%.3f,\"pub_msgs_per_s\":0,"
                                + "\"cons_msgs_per_s\":%.1f,\"broker_cores\":%s}",
                        label, (now - start) / 1e9, (count - rowCount) / secs, cpu.cores(cpuNow - rowCpu, secs)));
                rowStart = now;
                rowCount = count;
                rowCpu = cpuNow;
            }
        }
        double secs = (System.nanoTime() - start) / 1e9;
        System.out.println(String.format(Locale.ROOT,
                "{\"aggregate\":true,\"label\":\"%s\",\"phase\":\"consume\",\"messages\":%d,\"seconds\":%.3f,"
                        + "\"msgs_per_s\":%.1f,\"broker_cpu_s_per_million\":%s}",
                label, count, secs, count / secs, cpu.perMillion(cpu.ticks() - cpu0, count)));
        consumer.shutdown();
        if (count < messages) {
            System.err.println("consumed only " + count + " of " + messages + " before the timeout");
            System.exit(1);
        }
    }

    private static String latency(Histogram h) {
        double ms = 1000.0;
        return String.format(Locale.ROOT, "{\"count\":%d,\"avg\":%.3f,\"p50\":%.3f,\"p99\":%.3f,\"p99_9\":%.3f,\"max\":%.3f}",
                h.getTotalCount(), h.getMean() / ms, h.getValueAtPercentile(50) / ms,
                h.getValueAtPercentile(99) / ms, h.getValueAtPercentile(99.9) / ms, h.getMaxValue() / ms);
    }

    /** The broker's CPU time from /proc/PID/stat (user + system, in USER_HZ = 100 ticks/s on Linux). */
    private record Cpu(String pid) {
        long ticks() {
            if (pid == null) {
                return 0;
            }
            try {
                String stat = Files.readString(Path.of("/proc", pid, "stat"));
                // Fields after the command name, which may hold spaces: ") S ppid ..."
                String[] f = stat.substring(stat.lastIndexOf(')') + 2).split(" ");
                return Long.parseLong(f[11]) + Long.parseLong(f[12]);
            } catch (Exception e) {
                return 0;
            }
        }

        String cores(long ticks, double secs) {
            return pid == null ? "null" : String.format(Locale.ROOT, "%.3f", ticks / 100.0 / secs);
        }

        String perMillion(long ticks, long msgs) {
            return pid == null || msgs == 0 ? "null" : String.format(Locale.ROOT, "%.3f", ticks / 100.0 * 1e6 / msgs);
        }
    }
}
