package io.fjord.clients;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;

import org.apache.rocketmq.client.apis.ClientConfiguration;
import org.apache.rocketmq.client.apis.ClientServiceProvider;
import org.apache.rocketmq.client.apis.consumer.ConsumeResult;
import org.apache.rocketmq.client.apis.consumer.FilterExpression;
import org.apache.rocketmq.client.apis.consumer.FilterExpressionType;
import org.apache.rocketmq.client.apis.consumer.PushConsumer;
import org.apache.rocketmq.client.apis.consumer.SimpleConsumer;
import org.apache.rocketmq.client.apis.message.Message;
import org.apache.rocketmq.client.apis.message.MessageView;
import org.apache.rocketmq.client.apis.producer.Producer;
import org.apache.rocketmq.client.apis.producer.SendReceipt;
import org.apache.rocketmq.client.apis.producer.Transaction;
import org.apache.rocketmq.client.apis.producer.TransactionResolution;
import org.apache.rocketmq.common.TopicConfig;
import org.apache.rocketmq.remoting.protocol.subscription.SubscriptionGroupConfig;
import org.apache.rocketmq.tools.admin.DefaultMQAdminExt;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * The RocketMQ 5.x gRPC Java client (rocketmq-client-java) against Fjord's
 * gRPC port: normal, FIFO, delayed and transactional producers,
 * SimpleConsumer and PushConsumer.
 */
@Timeout(value = 120, unit = TimeUnit.SECONDS)
class RocketMqGrpcClientTest {
    static final ClientServiceProvider provider = ClientServiceProvider.loadService();
    static ClientConfiguration config;
    static final List<AutoCloseable> toClose = new ArrayList<>();

    @BeforeAll
    static void start() {
        config = ClientConfiguration.newBuilder()
                .setEndpoints(FjordBroker.get().addr("rocketmq_grpc"))
                .enableSsl(false)
                .setRequestTimeout(Duration.ofSeconds(10))
                .build();
    }

    @AfterAll
    static void stop() throws Exception {
        Collections.reverse(toClose);
        for (AutoCloseable c : toClose) {
            c.close();
        }
    }

    /**
     * A new topic of one message type (NORMAL, FIFO, DELAY, TRANSACTION),
     * created through the broker's admin command first, as RocketMQ 5 users
     * do (`mqadmin updateTopic -a +message.type=FIFO`): 5.x clients do not
     * auto-create topics, and Apache RocketMQ's proxy refuses messages of
     * another type than the topic's. Fjord keeps the attribute and does not
     * enforce it.
     */
    static String topic(String prefix, String messageType) throws Exception {
        String name = FjordBroker.unique(prefix);
        TopicConfig config = new TopicConfig(name, 4, 4, 6);
        config.setAttributes(Map.of("+message.type", messageType));
        withAdmin(admin -> {
            admin.createAndUpdateTopicConfig(FjordBroker.get().addr("rocketmq_broker"), config);
            FjordBroker.await(Duration.ofSeconds(30), "the route of " + name, () -> {
                try {
                    return !admin.examineTopicRouteInfo(name).getQueueDatas().isEmpty();
                } catch (Exception e) {
                    return false;
                }
            });
        });
        return name;
    }

    /** A consumer group, created first (orderly for FIFO topics, as RocketMQ 5 needs). */
    static String group(String prefix, boolean orderly) throws Exception {
        String name = FjordBroker.unique(prefix);
        SubscriptionGroupConfig config = new SubscriptionGroupConfig();
        config.setGroupName(name);
        config.setConsumeMessageOrderly(orderly);
        withAdmin(admin -> admin.createAndUpdateSubscriptionGroupConfig(FjordBroker.get().addr("rocketmq_broker"), config));
        return name;
    }

    interface AdminCall {
        void run(DefaultMQAdminExt admin) throws Exception;
    }

    static void withAdmin(AdminCall call) throws Exception {
        DefaultMQAdminExt admin = new DefaultMQAdminExt();
        admin.setNamesrvAddr(FjordBroker.get().namesrv());
        admin.setInstanceName(FjordBroker.unique("grpc_admin"));
        admin.start();
        try {
            call.run(admin);
        } finally {
            admin.shutdown();
        }
    }

    static Producer producer(String... topics) throws Exception {
        Producer p = provider.newProducerBuilder().setClientConfiguration(config).setTopics(topics).build();
        toClose.add(p);
        return p;
    }

    static Message message(String topic, String tag, String body) {
        return provider.newMessageBuilder().setTopic(topic).setTag(tag).setKeys("key-" + body)
                .setBody(body.getBytes(StandardCharsets.UTF_8)).build();
    }

    static String body(MessageView m) {
        return StandardCharsets.UTF_8.decode(m.getBody()).toString();
    }

    static SimpleConsumer simpleConsumer(String group, String topic, FilterExpression filter) throws Exception {
        SimpleConsumer c = provider.newSimpleConsumerBuilder().setClientConfiguration(config)
                .setConsumerGroup(group).setAwaitDuration(Duration.ofSeconds(2))
                .setSubscriptionExpressions(Map.of(topic, filter)).build();
        toClose.add(c);
        return c;
    }

    /** Receives and acks until `n` messages arrived (or fails after 60 s). */
    static List<MessageView> receive(SimpleConsumer c, int n) throws Exception {
        List<MessageView> got = new ArrayList<>();
        long deadline = System.currentTimeMillis() + 60_000;
        while (got.size() < n) {
            assertTrue(System.currentTimeMillis() < deadline, "only " + got.size() + " of " + n);
            for (MessageView m : c.receive(16, Duration.ofSeconds(30))) {
                got.add(m);
                c.ack(m);
            }
        }
        return got;
    }

    @Test
    void normalSendsAndSimpleConsumerWithTagFilterAndInvisibility() throws Exception {
        String topic = topic("Grpc", "NORMAL");
        Producer p = producer(topic);
        for (int i = 0; i < 6; i++) {
            SendReceipt r = p.send(message(topic, i % 2 == 0 ? "TagA" : "TagB", "n" + i));
            assertNotNull(r.getMessageId());
        }
        SimpleConsumer c = simpleConsumer(group("GrpcGroup", false), topic,
                new FilterExpression("TagA", FilterExpressionType.TAG));
        List<MessageView> got = new ArrayList<>();
        long deadline = System.currentTimeMillis() + 60_000;
        MessageView extended = null;
        while (got.size() < 3) {
            assertTrue(System.currentTimeMillis() < deadline, "only " + got.size() + " of 3");
            for (MessageView m : c.receive(16, Duration.ofSeconds(30))) {
                got.add(m);
                if (extended == null) {
                    // Keep one invisible longer, then ack it with the new handle.
                    c.changeInvisibleDuration(m, Duration.ofSeconds(60));
                    extended = m;
                }
                c.ack(m);
            }
        }
        Set<String> bodies = ConcurrentHashMap.newKeySet();
        got.forEach(m -> bodies.add(body(m)));
        assertEquals(Set.of("n0", "n2", "n4"), bodies);
        assertEquals("TagA", got.get(0).getTag().orElse(""));
        assertTrue(got.get(0).getKeys().contains("key-" + body(got.get(0))));
    }

    @Test
    void fifoMessagesOfOneGroupArriveInOrder() throws Exception {
        String topic = topic("GrpcFifo", "FIFO");
        Producer p = producer(topic);
        for (int i = 0; i < 5; i++) {
            p.send(provider.newMessageBuilder().setTopic(topic).setMessageGroup("order-7")
                    .setBody(("f" + i).getBytes(StandardCharsets.UTF_8)).build());
        }
        SimpleConsumer c = simpleConsumer(group("GrpcFifoGroup", true), topic, FilterExpression.SUB_ALL);
        List<String> order = receive(c, 5).stream().map(RocketMqGrpcClientTest::body).toList();
        assertEquals(List.of("f0", "f1", "f2", "f3", "f4"), order);
    }

    @Test
    void deliveryTimestampHoldsTheMessageBack() throws Exception {
        String topic = topic("GrpcDelay", "DELAY");
        Producer p = producer(topic);
        long due = System.currentTimeMillis() + 3000;
        p.send(provider.newMessageBuilder().setTopic(topic).setDeliveryTimestamp(due)
                .setBody("later".getBytes(StandardCharsets.UTF_8)).build());
        SimpleConsumer c = simpleConsumer(group("GrpcDelayGroup", false), topic, FilterExpression.SUB_ALL);
        MessageView m = receive(c, 1).get(0);
        assertEquals("later", body(m));
        assertTrue(System.currentTimeMillis() >= due - 200, "delivered before its time");
    }

    @Test
    void transactionsCommitRollbackAndCheckBack() throws Exception {
        String topic = topic("GrpcTx", "TRANSACTION");
        AtomicInteger checks = new AtomicInteger();
        Producer p = provider.newProducerBuilder().setClientConfiguration(config).setTopics(topic)
                .setTransactionChecker(view -> {
                    checks.incrementAndGet();
                    return body(view).equals("rolled-back") ? TransactionResolution.ROLLBACK
                            : TransactionResolution.COMMIT;
                }).build();
        toClose.add(p);
        Transaction committed = p.beginTransaction();
        p.send(message(topic, "tx", "committed"), committed);
        committed.commit();
        Transaction rolledBack = p.beginTransaction();
        p.send(message(topic, "tx", "rolled-back"), rolledBack);
        rolledBack.rollback();
        // Neither committed nor rolled back: resolved by the checker.
        Transaction orphan = p.beginTransaction();
        p.send(message(topic, "tx", "by-check"), orphan);

        SimpleConsumer c = simpleConsumer(group("GrpcTxGroup", false), topic, FilterExpression.SUB_ALL);
        // Delivery is at least once: a check-back racing the producer's own
        // commit may store a message twice (Apache RocketMQ 5.5.0 does), so
        // wait for two distinct messages.
        Set<String> got = ConcurrentHashMap.newKeySet();
        long deadline = System.currentTimeMillis() + 60_000;
        while (got.size() < 2) {
            assertTrue(System.currentTimeMillis() < deadline, "only " + got);
            for (MessageView m : c.receive(16, Duration.ofSeconds(30))) {
                got.add(body(m));
                c.ack(m);
            }
        }
        Thread.sleep(1000);
        for (MessageView m : c.receive(16, Duration.ofSeconds(10))) {
            got.add(body(m));
        }
        assertEquals(Set.of("committed", "by-check"), got, "the rolled-back message is never delivered");
        assertTrue(checks.get() >= 1, "the orphan was checked back");
    }

    @Test
    void pushConsumerReceivesEveryMessage() throws Exception {
        String topic = topic("GrpcPush", "NORMAL");
        Set<String> got = ConcurrentHashMap.newKeySet();
        List<String> failedOnce = new CopyOnWriteArrayList<>();
        PushConsumer c = provider.newPushConsumerBuilder().setClientConfiguration(config)
                .setConsumerGroup(group("GrpcPushGroup", false))
                .setSubscriptionExpressions(Map.of(topic, FilterExpression.SUB_ALL))
                .setMessageListener(m -> {
                    String b = body(m);
                    // The first delivery of one message fails: it comes back.
                    if (b.equals("p1") && failedOnce.isEmpty()) {
                        failedOnce.add(b);
                        return ConsumeResult.FAILURE;
                    }
                    got.add(b);
                    return ConsumeResult.SUCCESS;
                }).build();
        toClose.add(c);
        Producer p = producer(topic);
        for (int i = 0; i < 4; i++) {
            p.send(message(topic, "push", "p" + i));
        }
        FjordBroker.await(Duration.ofSeconds(90), "4 messages, one after a retry", () -> got.size() >= 4);
        assertEquals(Set.of("p0", "p1", "p2", "p3"), got);
        assertEquals(List.of("p1"), failedOnce);
    }
}
