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
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;

import org.apache.rocketmq.client.consumer.DefaultLitePullConsumer;
import org.apache.rocketmq.client.consumer.DefaultMQPushConsumer;
import org.apache.rocketmq.client.consumer.MessageSelector;
import org.apache.rocketmq.client.consumer.listener.ConsumeConcurrentlyStatus;
import org.apache.rocketmq.client.consumer.listener.ConsumeOrderlyStatus;
import org.apache.rocketmq.client.consumer.listener.MessageListenerConcurrently;
import org.apache.rocketmq.client.consumer.listener.MessageListenerOrderly;
import org.apache.rocketmq.client.producer.DefaultMQProducer;
import org.apache.rocketmq.client.producer.LocalTransactionState;
import org.apache.rocketmq.client.producer.SendCallback;
import org.apache.rocketmq.client.producer.SendResult;
import org.apache.rocketmq.client.producer.SendStatus;
import org.apache.rocketmq.client.producer.TransactionListener;
import org.apache.rocketmq.client.producer.TransactionMQProducer;
import org.apache.rocketmq.client.producer.TransactionSendResult;
import org.apache.rocketmq.common.consumer.ConsumeFromWhere;
import org.apache.rocketmq.common.message.Message;
import org.apache.rocketmq.common.message.MessageExt;
import org.apache.rocketmq.common.message.MessageQueue;
import org.apache.rocketmq.remoting.common.RemotingHelper;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * The RocketMQ remoting Java client (rocketmq-client) against Fjord's
 * remoting ports: the seed articles' producer and push consumer first, then
 * the rest of the everyday API. The same source runs with 4.9.x (module
 * clients) and 5.x (module rocketmq5), so it names no class whose package
 * moved between them.
 */
@Timeout(value = 120, unit = TimeUnit.SECONDS)
class RocketMqClientTest {
    static FjordBroker broker;
    static DefaultMQProducer producer;
    static final List<AutoCloseable> toClose = new ArrayList<>();

    @BeforeAll
    static void start() throws Exception {
        broker = FjordBroker.get();
        producer = new DefaultMQProducer("example_group");
        producer.setNamesrvAddr(broker.namesrv());
        producer.setInstanceName(FjordBroker.unique("producer"));
        producer.start();
    }

    @AfterAll
    static void stop() throws Exception {
        for (AutoCloseable c : toClose) {
            c.close();
        }
        toClose.clear();
        producer.shutdown();
    }

    static DefaultMQPushConsumer pushConsumer(String group) {
        DefaultMQPushConsumer c = new DefaultMQPushConsumer(group);
        c.setNamesrvAddr(broker.namesrv());
        c.setInstanceName(FjordBroker.unique("consumer"));
        c.setConsumeFromWhere(ConsumeFromWhere.CONSUME_FROM_FIRST_OFFSET);
        toClose.add(c::shutdown);
        return c;
    }

    /**
     * MessageModel moved from common.protocol.heartbeat (4.x) to
     * remoting.protocol.heartbeat (5.x): set BROADCASTING through the
     * setter's own parameter type.
     */
    @SuppressWarnings({"unchecked", "rawtypes"})
    static void broadcasting(DefaultMQPushConsumer c) throws ReflectiveOperationException {
        Class model = DefaultMQPushConsumer.class.getMethod("getMessageModel").getReturnType();
        DefaultMQPushConsumer.class.getMethod("setMessageModel", model).invoke(c, Enum.valueOf(model, "BROADCASTING"));
    }

    /** An asynchronous send's callback: counts the answer down, keeps any error. */
    static SendCallback counting(CountDownLatch answered, List<Throwable> errors) {
        return new SendCallback() {
            @Override
            public void onSuccess(SendResult r) {
                answered.countDown();
            }

            @Override
            public void onException(Throwable e) {
                errors.add(e);
                answered.countDown();
            }
        };
    }

    static String body(MessageExt m) {
        return new String(m.getBody(), StandardCharsets.UTF_8);
    }

    /** The seed's producer loop (tags alternating, one key) and push consumer. */
    @Test
    void seedProducerAndPushConsumerWithTagFilter() throws Exception {
        String topic = FjordBroker.unique("TestTopic");
        List<String> sent = new ArrayList<>();
        for (int i = 0; i < 10; i++) {
            Message msg = new Message(topic, "TagA" + i % 2, "OrderID188",
                    ("Hello RocketMQ " + i).getBytes(RemotingHelper.DEFAULT_CHARSET));
            SendResult r = producer.send(msg);
            assertEquals(SendStatus.SEND_OK, r.getSendStatus(), r.toString());
            assertNotNull(r.getMsgId());
            if (i % 2 == 0) {
                sent.add("Hello RocketMQ " + i);
            }
        }
        Set<String> got = ConcurrentHashMap.newKeySet();
        List<String> wrongTags = new CopyOnWriteArrayList<>();
        DefaultMQPushConsumer consumer = pushConsumer(FjordBroker.unique("ExampleConsumer"));
        consumer.subscribe(topic, "TagA0");
        consumer.registerMessageListener((MessageListenerConcurrently) (msgs, ctx) -> {
            for (MessageExt m : msgs) {
                if (!"TagA0".equals(m.getTags()) || !"OrderID188".equals(m.getKeys())) {
                    wrongTags.add(m.getTags() + "/" + m.getKeys());
                }
                got.add(body(m));
            }
            return ConsumeConcurrentlyStatus.CONSUME_SUCCESS;
        });
        consumer.start();
        FjordBroker.await(Duration.ofSeconds(60), "the TagA0 messages", () -> got.size() >= sent.size());
        assertEquals(Set.copyOf(sent), got);
        assertTrue(wrongTags.isEmpty(), "tag filter and keys: " + wrongTags);
    }

    @Test
    void asyncOnewayAndBatchSendsArriveWithTheirProperties() throws Exception {
        String topic = FjordBroker.unique("Sends");
        CountDownLatch acked = new CountDownLatch(5);
        List<Throwable> errors = new CopyOnWriteArrayList<>();
        for (int i = 0; i < 5; i++) {
            Message m = new Message(topic, "async", ("async-" + i).getBytes(StandardCharsets.UTF_8));
            m.putUserProperty("color", "red");
            producer.send(m, counting(acked, errors));
        }
        assertTrue(acked.await(30, TimeUnit.SECONDS));
        assertTrue(errors.isEmpty(), errors.toString());
        for (int i = 0; i < 3; i++) {
            producer.sendOneway(new Message(topic, "oneway", ("oneway-" + i).getBytes(StandardCharsets.UTF_8)));
        }
        List<Message> batch = new ArrayList<>();
        for (int i = 0; i < 4; i++) {
            batch.add(new Message(topic, "batch", ("batch-" + i).getBytes(StandardCharsets.UTF_8)));
        }
        assertEquals(SendStatus.SEND_OK, producer.send(batch).getSendStatus());

        Map<String, MessageExt> got = new ConcurrentHashMap<>();
        DefaultMQPushConsumer consumer = pushConsumer(FjordBroker.unique("SendsGroup"));
        consumer.subscribe(topic, "*");
        consumer.registerMessageListener((MessageListenerConcurrently) (msgs, ctx) -> {
            msgs.forEach(m -> got.put(body(m), m));
            return ConsumeConcurrentlyStatus.CONSUME_SUCCESS;
        });
        consumer.start();
        FjordBroker.await(Duration.ofSeconds(60), "12 messages", () -> got.size() >= 12);
        assertEquals("red", got.get("async-0").getUserProperty("color"));
        assertEquals("batch", got.get("batch-3").getTags());
        assertEquals("oneway", got.get("oneway-2").getTags());
    }

    @Test
    void orderedSendsAreConsumedInOrderPerQueue() throws Exception {
        String topic = FjordBroker.unique("Ordered");
        // Three orders, five steps each, each order to its own queue.
        for (int step = 0; step < 5; step++) {
            for (int order = 0; order < 3; order++) {
                Message m = new Message(topic, "step", "order-" + order,
                        (order + ":" + step).getBytes(StandardCharsets.UTF_8));
                SendResult r = producer.send(m, (mqs, msg, arg) -> mqs.get((Integer) arg % mqs.size()), order);
                assertEquals(SendStatus.SEND_OK, r.getSendStatus());
            }
        }
        Map<String, List<Integer>> steps = new ConcurrentHashMap<>();
        AtomicInteger count = new AtomicInteger();
        DefaultMQPushConsumer consumer = pushConsumer(FjordBroker.unique("OrderedGroup"));
        consumer.subscribe(topic, "*");
        consumer.registerMessageListener((MessageListenerOrderly) (msgs, ctx) -> {
            for (MessageExt m : msgs) {
                String[] parts = body(m).split(":");
                steps.computeIfAbsent(parts[0], k -> new CopyOnWriteArrayList<>()).add(Integer.parseInt(parts[1]));
                count.incrementAndGet();
            }
            return ConsumeOrderlyStatus.SUCCESS;
        });
        consumer.start();
        FjordBroker.await(Duration.ofSeconds(60), "15 ordered messages", () -> count.get() >= 15);
        for (List<Integer> s : steps.values()) {
            assertEquals(List.of(0, 1, 2, 3, 4), s, "steps of one order in order: " + steps);
        }
    }

    @Test
    void delayLevelHoldsTheMessageBack() throws Exception {
        String topic = FjordBroker.unique("Delayed");
        Message m = new Message(topic, "later", "delayed".getBytes(StandardCharsets.UTF_8));
        m.setDelayTimeLevel(2); // 5 s
        long sentAt = System.currentTimeMillis();
        assertEquals(SendStatus.SEND_OK, producer.send(m).getSendStatus());
        List<Long> receivedAt = new CopyOnWriteArrayList<>();
        DefaultMQPushConsumer consumer = pushConsumer(FjordBroker.unique("DelayedGroup"));
        consumer.subscribe(topic, "*");
        consumer.registerMessageListener((MessageListenerConcurrently) (msgs, ctx) -> {
            msgs.forEach(x -> receivedAt.add(System.currentTimeMillis()));
            return ConsumeConcurrentlyStatus.CONSUME_SUCCESS;
        });
        consumer.start();
        FjordBroker.await(Duration.ofSeconds(60), "the delayed message", () -> !receivedAt.isEmpty());
        long waited = receivedAt.get(0) - sentAt;
        assertTrue(waited >= 4500, "delay level 2 (5 s) held it back only " + waited + " ms");
    }

    @Test
    void sql92FilterSelectsByProperty() throws Exception {
        String topic = FjordBroker.unique("Sql");
        for (int i = 0; i < 10; i++) {
            Message m = new Message(topic, "TagS", ("sql-" + i).getBytes(StandardCharsets.UTF_8));
            m.putUserProperty("a", String.valueOf(i));
            producer.send(m);
        }
        Set<String> got = ConcurrentHashMap.newKeySet();
        DefaultMQPushConsumer consumer = pushConsumer(FjordBroker.unique("SqlGroup"));
        consumer.subscribe(topic, MessageSelector.bySql("TAGS = 'TagS' AND a BETWEEN 3 AND 5"));
        consumer.registerMessageListener((MessageListenerConcurrently) (msgs, ctx) -> {
            msgs.forEach(m -> got.add(body(m)));
            return ConsumeConcurrentlyStatus.CONSUME_SUCCESS;
        });
        consumer.start();
        FjordBroker.await(Duration.ofSeconds(60), "the selected messages", () -> got.size() >= 3);
        Thread.sleep(500); // anything else would have come with them
        assertEquals(Set.of("sql-3", "sql-4", "sql-5"), got);
    }

    @Test
    void broadcastingDeliversEveryMessageToEveryInstance() throws Exception {
        String topic = FjordBroker.unique("Broadcast");
        String group = FjordBroker.unique("BroadcastGroup");
        for (int i = 0; i < 6; i++) {
            producer.send(new Message(topic, "b", ("b-" + i).getBytes(StandardCharsets.UTF_8)));
        }
        // Each instance keeps its own progress and starts from the first
        // offset (pushConsumer's setting), so both get all six.
        List<Set<String>> seen = new ArrayList<>();
        for (int i = 0; i < 2; i++) {
            Set<String> mine = ConcurrentHashMap.newKeySet();
            seen.add(mine);
            DefaultMQPushConsumer c = pushConsumer(group);
            broadcasting(c);
            c.subscribe(topic, "*");
            c.registerMessageListener((MessageListenerConcurrently) (msgs, ctx) -> {
                msgs.forEach(m -> mine.add(body(m)));
                return ConsumeConcurrentlyStatus.CONSUME_SUCCESS;
            });
            c.start();
        }
        FjordBroker.await(Duration.ofSeconds(60), "6 messages at both instances",
                () -> seen.stream().allMatch(s -> s.size() >= 6));
    }

    @Test
    void transactionsResolvedByCheckBackAreDeliveredAndRollbacksAreNot() throws Exception {
        String topic = FjordBroker.unique("Tx");
        TransactionMQProducer tx = new TransactionMQProducer(FjordBroker.unique("tx_group"));
        tx.setNamesrvAddr(broker.namesrv());
        tx.setInstanceName(FjordBroker.unique("tx"));
        AtomicInteger checks = new AtomicInteger();
        tx.setTransactionListener(new TransactionListener() {
            @Override
            public LocalTransactionState executeLocalTransaction(Message msg, Object arg) {
                String b = new String(msg.getBody(), StandardCharsets.UTF_8);
                return b.startsWith("rollback") ? LocalTransactionState.ROLLBACK_MESSAGE : LocalTransactionState.UNKNOW;
            }

            @Override
            public LocalTransactionState checkLocalTransaction(MessageExt msg) {
                // A broker may check a half message before the producer's
                // rollback reaches it: the checker agrees with the producer.
                checks.incrementAndGet();
                String b = new String(msg.getBody(), StandardCharsets.UTF_8);
                return b.startsWith("rollback") ? LocalTransactionState.ROLLBACK_MESSAGE
                        : LocalTransactionState.COMMIT_MESSAGE;
            }
        });
        tx.start();
        toClose.add(tx::shutdown);
        TransactionSendResult r = tx.sendMessageInTransaction(
                new Message(topic, "tx", "commit-by-check".getBytes(StandardCharsets.UTF_8)), null);
        assertEquals(SendStatus.SEND_OK, r.getSendStatus());
        assertEquals(LocalTransactionState.UNKNOW, r.getLocalTransactionState());
        tx.sendMessageInTransaction(new Message(topic, "tx", "rollback-now".getBytes(StandardCharsets.UTF_8)), null);

        Set<String> got = ConcurrentHashMap.newKeySet();
        DefaultMQPushConsumer consumer = pushConsumer(FjordBroker.unique("TxGroup"));
        consumer.subscribe(topic, "*");
        consumer.registerMessageListener((MessageListenerConcurrently) (msgs, ctx) -> {
            msgs.forEach(m -> got.add(body(m)));
            return ConsumeConcurrentlyStatus.CONSUME_SUCCESS;
        });
        consumer.start();
        FjordBroker.await(Duration.ofSeconds(60), "the committed message", () -> got.contains("commit-by-check"));
        assertTrue(checks.get() >= 1, "committed by a check-back");
        Thread.sleep(1000);
        assertEquals(Set.of("commit-by-check"), got, "the rolled-back message is never delivered");
    }

    @Test
    void reconsumeLaterRetriesThenDeadLetters() throws Exception {
        String topic = FjordBroker.unique("Retry");
        String group = FjordBroker.unique("RetryGroup");
        producer.send(new Message(topic, "r", "KEY-R", "retry-me".getBytes(StandardCharsets.UTF_8)));
        List<Integer> attempts = new CopyOnWriteArrayList<>();
        DefaultMQPushConsumer consumer = pushConsumer(group);
        consumer.setMaxReconsumeTimes(1);
        consumer.subscribe(topic, "*");
        consumer.registerMessageListener((MessageListenerConcurrently) (msgs, ctx) -> {
            msgs.forEach(m -> attempts.add(m.getReconsumeTimes()));
            return ConsumeConcurrentlyStatus.RECONSUME_LATER;
        });
        consumer.start();
        FjordBroker.await(Duration.ofSeconds(90), "a redelivery", () -> attempts.size() >= 2);
        assertEquals(0, attempts.get(0));
        assertEquals(1, attempts.get(1), "redelivered through the retry topic with its count");
        // After maxReconsumeTimes the message goes to %DLQ%<group>.
        DefaultLitePullConsumer dlq = new DefaultLitePullConsumer(FjordBroker.unique("DlqReader"));
        dlq.setNamesrvAddr(broker.namesrv());
        dlq.setInstanceName(FjordBroker.unique("dlq"));
        dlq.start();
        toClose.add(dlq::shutdown);
        List<MessageExt> dead = new ArrayList<>();
        FjordBroker.await(Duration.ofSeconds(90), "the dead letter", () -> {
            try {
                List<MessageQueue> queues = new ArrayList<>(dlq.fetchMessageQueues("%DLQ%" + group));
                dlq.assign(queues);
                for (MessageQueue q : queues) {
                    dlq.seek(q, 0);
                }
                dead.addAll(dlq.poll(2000));
                return !dead.isEmpty();
            } catch (Exception e) {
                return false;
            }
        });
        assertEquals("retry-me", body(dead.get(0)));
        assertEquals("KEY-R", dead.get(0).getKeys());
        assertEquals(2, attempts.size(), "no delivery after the dead letter: " + attempts);
    }

    @Test
    void litePullConsumerSubscribeAssignSeekAndCommit() throws Exception {
        String topic = FjordBroker.unique("Lite");
        for (int i = 0; i < 8; i++) {
            producer.send(new Message(topic, "l", ("lite-" + i).getBytes(StandardCharsets.UTF_8)));
        }
        String group = FjordBroker.unique("LiteGroup");
        DefaultLitePullConsumer sub = new DefaultLitePullConsumer(group);
        sub.setNamesrvAddr(broker.namesrv());
        sub.setInstanceName(FjordBroker.unique("lite"));
        sub.setConsumeFromWhere(ConsumeFromWhere.CONSUME_FROM_FIRST_OFFSET);
        sub.setAutoCommit(false);
        sub.subscribe(topic, "*");
        sub.start();
        toClose.add(sub::shutdown);
        List<String> got = new ArrayList<>();
        FjordBroker.await(Duration.ofSeconds(60), "8 messages", () -> {
            sub.poll(500).forEach(m -> got.add(body(m)));
            return got.size() >= 8;
        });
        sub.commitSync();
        assertEquals(8, got.size());

        DefaultLitePullConsumer assigned = new DefaultLitePullConsumer(FjordBroker.unique("LiteAssign"));
        assigned.setNamesrvAddr(broker.namesrv());
        assigned.setInstanceName(FjordBroker.unique("assign"));
        assigned.start();
        toClose.add(assigned::shutdown);
        List<MessageQueue> queues = new ArrayList<>(assigned.fetchMessageQueues(topic));
        Collections.sort(queues);
        assigned.assign(queues);
        for (MessageQueue q : queues) {
            assigned.seek(q, 0);
        }
        // A seek racing a pull already in flight may hand a message over
        // twice (Apache RocketMQ 5.5.0 with the 5.x client does): count
        // distinct messages.
        Set<String> all = ConcurrentHashMap.newKeySet();
        FjordBroker.await(Duration.ofSeconds(60), "8 messages again", () -> {
            assigned.poll(500).forEach(m -> all.add(body(m)));
            return all.size() >= 8;
        });
        assertEquals(Set.copyOf(got), all);
    }

    /** The deprecated pull consumer both 4.x and 5.x still ship: fetch queues, pull by offset, store progress. */
    @Test
    @SuppressWarnings("deprecation")
    void pullConsumerPullsByOffsetAndStoresProgress() throws Exception {
        String topic = FjordBroker.unique("Pull");
        for (int i = 0; i < 5; i++) {
            producer.send(new Message(topic, "p", ("pull-" + i).getBytes(StandardCharsets.UTF_8)),
                    (mqs, msg, arg) -> mqs.get(0), null);
        }
        org.apache.rocketmq.client.consumer.DefaultMQPullConsumer pull =
                new org.apache.rocketmq.client.consumer.DefaultMQPullConsumer(FjordBroker.unique("PullGroup"));
        pull.setNamesrvAddr(broker.namesrv());
        pull.setInstanceName(FjordBroker.unique("pull"));
        pull.start();
        toClose.add(pull::shutdown);
        MessageQueue q0 = pull.fetchSubscribeMessageQueues(topic).stream()
                .filter(q -> q.getQueueId() == 0).findFirst().orElseThrow();
        assertEquals(5, pull.maxOffset(q0));
        assertEquals(0, pull.minOffset(q0));
        org.apache.rocketmq.client.consumer.PullResult r = pull.pull(q0, "*", 1, 32);
        assertEquals(org.apache.rocketmq.client.consumer.PullStatus.FOUND, r.getPullStatus());
        assertEquals(List.of("pull-1", "pull-2", "pull-3", "pull-4"),
                r.getMsgFoundList().stream().map(RocketMqClientTest::body).toList());
        assertEquals(5, r.getNextBeginOffset());
        pull.updateConsumeOffset(q0, r.getNextBeginOffset());
        pull.getOffsetStore().persist(q0);
        if (org.apache.rocketmq.common.MQVersion.CURRENT_VERSION
                < org.apache.rocketmq.common.MQVersion.Version.V5_0_0.ordinal()) {
            // 4.x: the one-way persist is read back at once (Fjord finishes
            // an offset update before reading the connection's next request).
            assertEquals(5, pull.fetchConsumeOffset(q0, true));
        } else {
            // 5.x: about one run in six reads 0 right after the one-way
            // persist against Fjord (not seen against RocketMQ 5.5.0); the
            // cause is not found yet (README, "The real brokers side by
            // side"). The value must arrive all the same.
            FjordBroker.await(Duration.ofSeconds(10), "the persisted offset", () -> {
                try {
                    return pull.fetchConsumeOffset(q0, true) == 5;
                } catch (Exception e) {
                    return false;
                }
            });
        }
        org.apache.rocketmq.client.consumer.PullResult none = pull.pull(q0, "*", 5, 32);
        assertEquals(org.apache.rocketmq.client.consumer.PullStatus.NO_NEW_MSG, none.getPullStatus());
    }

    @Test
    void queryByKeyAndViewById() throws Exception {
        String topic = FjordBroker.unique("Query");
        SendResult r = producer.send(new Message(topic, "q", "KEY-42", "find-me".getBytes(StandardCharsets.UTF_8)));
        long now = System.currentTimeMillis();
        List<MessageExt> found = new ArrayList<>();
        FjordBroker.await(Duration.ofSeconds(30), "the message by key", () -> {
            try {
                found.addAll(producer.queryMessage(topic, "KEY-42", 10, now - 60_000, now + 60_000).getMessageList());
                return !found.isEmpty();
            } catch (Exception e) {
                return false;
            }
        });
        assertEquals("find-me", body(found.get(0)));
        MessageExt byId = producer.viewMessage(topic, r.getMsgId());
        assertEquals("find-me", body(byId));
    }
}
