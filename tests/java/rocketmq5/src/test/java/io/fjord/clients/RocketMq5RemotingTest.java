package io.fjord.clients;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;

import org.apache.rocketmq.client.consumer.DefaultMQPushConsumer;
import org.apache.rocketmq.client.consumer.listener.ConsumeConcurrentlyStatus;
import org.apache.rocketmq.client.consumer.listener.MessageListenerConcurrently;
import org.apache.rocketmq.client.producer.DefaultMQProducer;
import org.apache.rocketmq.client.producer.SendResult;
import org.apache.rocketmq.client.producer.SendStatus;
import org.apache.rocketmq.common.message.Message;
import org.apache.rocketmq.common.message.MessageExt;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * What only the 5.x remoting client has: timed delivery at any time
 * (`setDeliverTimeMs`, `setDelayTimeSec`, `setDelayTimeMs`, carried as the
 * TIMER_* properties) and the producer's automatic batching. The rest of
 * the everyday API runs in RocketMqClientTest against this client too.
 */
@Timeout(value = 120, unit = TimeUnit.SECONDS)
class RocketMq5RemotingTest {
    // The broker, the shared producer and the consumers' clean-up are
    // RocketMqClientTest's (the same package, compiled into this module).
    @BeforeAll
    static void start() throws Exception {
        RocketMqClientTest.start();
    }

    @AfterAll
    static void stop() throws Exception {
        RocketMqClientTest.stop();
    }

    static void consumer(String topic, MessageListenerConcurrently listener) throws Exception {
        DefaultMQPushConsumer c = RocketMqClientTest.pushConsumer(FjordBroker.unique("Group5"));
        c.subscribe(topic, "*");
        c.registerMessageListener(listener);
        c.start();
    }

    static String body(MessageExt m) {
        return RocketMqClientTest.body(m);
    }

    /** Each of the three timers holds its message back until its time, and no longer than needed. */
    @Test
    void deliverTimeAndDelaysHoldMessagesBackUntilTheirTime() throws Exception {
        String topic = FjordBroker.unique("Timed");
        long sentAt = System.currentTimeMillis();
        Message at = new Message(topic, "t", "at".getBytes(StandardCharsets.UTF_8));
        at.setDeliverTimeMs(sentAt + 4000);
        Message sec = new Message(topic, "t", "sec".getBytes(StandardCharsets.UTF_8));
        sec.setDelayTimeSec(3);
        Message ms = new Message(topic, "t", "ms".getBytes(StandardCharsets.UTF_8));
        ms.setDelayTimeMs(2000);
        Message now = new Message(topic, "t", "now".getBytes(StandardCharsets.UTF_8));
        for (Message m : List.of(at, sec, ms, now)) {
            SendResult r = RocketMqClientTest.producer.send(m);
            assertEquals(SendStatus.SEND_OK, r.getSendStatus(), r.toString());
        }
        Map<String, Long> receivedAt = new ConcurrentHashMap<>();
        consumer(topic, (msgs, ctx) -> {
            msgs.forEach(m -> receivedAt.putIfAbsent(body(m), System.currentTimeMillis()));
            return ConsumeConcurrentlyStatus.CONSUME_SUCCESS;
        });
        FjordBroker.await(Duration.ofSeconds(60), "the four messages", () -> receivedAt.size() >= 4);
        // The timers' own precision is a second at most (RocketMQ's timer
        // wheel ticks per second; Fjord's scheduler is finer).
        long slack = 1000;
        assertTrue(receivedAt.get("at") - sentAt >= 4000 - slack, "deliver time: " + (receivedAt.get("at") - sentAt));
        assertTrue(receivedAt.get("sec") - sentAt >= 3000 - slack, "delay sec: " + (receivedAt.get("sec") - sentAt));
        assertTrue(receivedAt.get("ms") - sentAt >= 2000 - slack, "delay ms: " + (receivedAt.get("ms") - sentAt));
        assertTrue(receivedAt.get("now") <= receivedAt.get("ms"), "the plain message is not held back");
    }

    /** setAutoBatch gathers asynchronous sends into batch requests; each message arrives once, whole. */
    @Test
    void autoBatchingProducerDeliversEveryMessageOnce() throws Exception {
        String topic = FjordBroker.unique("AutoBatch");
        DefaultMQProducer batching = new DefaultMQProducer(FjordBroker.unique("autobatch_group"));
        batching.setNamesrvAddr(FjordBroker.get().namesrv());
        batching.setInstanceName(FjordBroker.unique("autobatch"));
        batching.setAutoBatch(true);
        batching.start();
        RocketMqClientTest.toClose.add(batching::shutdown);
        int n = 200;
        CountDownLatch acked = new CountDownLatch(n);
        List<Throwable> errors = new CopyOnWriteArrayList<>();
        for (int i = 0; i < n; i++) {
            Message m = new Message(topic, "ab", "K" + i, ("auto-" + i).getBytes(StandardCharsets.UTF_8));
            m.putUserProperty("i", String.valueOf(i));
            batching.send(m, RocketMqClientTest.counting(acked, errors));
        }
        assertTrue(acked.await(60, TimeUnit.SECONDS), "every send answered");
        assertTrue(errors.isEmpty(), errors.toString());
        Map<String, Integer> seen = new ConcurrentHashMap<>();
        Set<String> badProps = ConcurrentHashMap.newKeySet();
        consumer(topic, (msgs, ctx) -> {
            for (MessageExt m : msgs) {
                String b = body(m);
                seen.merge(b, 1, Integer::sum);
                if (!b.equals("auto-" + m.getUserProperty("i")) || !m.getKeys().equals("K" + m.getUserProperty("i"))) {
                    badProps.add(b);
                }
            }
            return ConsumeConcurrentlyStatus.CONSUME_SUCCESS;
        });
        FjordBroker.await(Duration.ofSeconds(60), n + " messages", () -> seen.size() >= n);
        assertTrue(badProps.isEmpty(), "keys and properties kept per message: " + badProps);
        assertTrue(seen.values().stream().allMatch(c -> c == 1), "each message once: " + seen);
    }
}
