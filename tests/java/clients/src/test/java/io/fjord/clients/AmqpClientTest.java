package io.fjord.clients;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;

import com.rabbitmq.client.AMQP;
import com.rabbitmq.client.BuiltinExchangeType;
import com.rabbitmq.client.Channel;
import com.rabbitmq.client.Connection;
import com.rabbitmq.client.ConnectionFactory;
import com.rabbitmq.client.DefaultConsumer;
import com.rabbitmq.client.Envelope;
import com.rabbitmq.client.GetResponse;
import com.rabbitmq.client.MessageProperties;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.rocketmq.client.consumer.DefaultLitePullConsumer;
import org.apache.rocketmq.client.producer.DefaultMQProducer;
import org.apache.rocketmq.client.producer.SendStatus;
import org.apache.rocketmq.common.consumer.ConsumeFromWhere;
import org.apache.rocketmq.common.message.Message;
import org.apache.rocketmq.common.message.MessageExt;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/** RabbitMQ's Java client (com.rabbitmq:amqp-client) against Fjord's AMQP 0-9-1 listener. */
@Timeout(value = 120, unit = TimeUnit.SECONDS)
class AmqpClientTest {
    static FjordBroker broker;
    static Connection conn;

    @BeforeAll
    static void start() throws Exception {
        broker = FjordBroker.get();
        conn = factory().newConnection("fjord-java-tests");
    }

    @AfterAll
    static void stop() throws Exception {
        if (conn != null && conn.isOpen()) {
            conn.close();
        }
    }

    static ConnectionFactory factory() {
        String[] a = broker.amqp();
        ConnectionFactory f = new ConnectionFactory();
        f.setHost(a[0]);
        f.setPort(Integer.parseInt(a[1]));
        f.setRequestedHeartbeat(30);
        return f;
    }

    static String s(byte[] b) {
        return new String(b, StandardCharsets.UTF_8);
    }

    static GetResponse getWithin(Channel ch, String queue, boolean autoAck) throws Exception {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(15);
        while (System.nanoTime() < deadline) {
            GetResponse r = ch.basicGet(queue, autoAck);
            if (r != null) {
                return r;
            }
            Thread.sleep(50);
        }
        return null;
    }

    @Test
    void confirmsPrefetchAndManualAcks() throws Exception {
        Channel ch = conn.createChannel();
        String q = FjordBroker.unique("java_work");
        ch.queueDeclare(q, true, false, false, null);
        ch.confirmSelect();
        for (int i = 0; i < 50; i++) {
            ch.basicPublish("", q, MessageProperties.PERSISTENT_TEXT_PLAIN, ("task-" + i).getBytes(StandardCharsets.UTF_8));
        }
        ch.waitForConfirmsOrDie(10_000);
        assertEquals(50, ch.queueDeclarePassive(q).getMessageCount());

        Channel consumer = conn.createChannel();
        consumer.basicQos(5);
        BlockingQueue<String> got = new LinkedBlockingQueue<>();
        List<Integer> inFlight = new CopyOnWriteArrayList<>();
        int[] unacked = {0};
        consumer.basicConsume(q, false, new DefaultConsumer(consumer) {
            @Override
            public void handleDelivery(String tag, Envelope env, AMQP.BasicProperties props, byte[] body) throws java.io.IOException {
                synchronized (unacked) {
                    unacked[0]++;
                    inFlight.add(unacked[0]);
                }
                synchronized (unacked) {
                    unacked[0]--;
                }
                // Acked before it is handed over, so the test thread never
                // closes the channel under an ack still to be sent.
                getChannel().basicAck(env.getDeliveryTag(), false);
                got.add(s(body));
            }
        });
        List<String> bodies = new ArrayList<>();
        for (int i = 0; i < 50; i++) {
            String b = got.poll(15, TimeUnit.SECONDS);
            assertNotNull(b, "message " + i);
            bodies.add(b);
        }
        for (int i = 0; i < 50; i++) {
            assertEquals("task-" + i, bodies.get(i));
        }
        assertTrue(Collections.max(inFlight) <= 5);
        consumer.close();
        ch.close();
    }

    @Test
    void topicExchangeMandatoryReturnsAndHeaders() throws Exception {
        Channel ch = conn.createChannel();
        String x = FjordBroker.unique("java_topic");
        ch.exchangeDeclare(x, BuiltinExchangeType.TOPIC, true);
        String q = ch.queueDeclare().getQueue();
        ch.queueBind(q, x, "orders.*.eu");
        BlockingQueue<Integer> returned = new LinkedBlockingQueue<>();
        ch.addReturnListener(r -> returned.add(r.getReplyCode()));
        ch.confirmSelect();
        AMQP.BasicProperties props = new AMQP.BasicProperties.Builder()
            .contentType("application/json").correlationId("c-1").headers(Map.of("tenant", "acme", "n", 7)).build();
        ch.basicPublish(x, "orders.created.eu", true, props, "{\"id\":1}".getBytes(StandardCharsets.UTF_8));
        ch.basicPublish(x, "orders.created.us", true, props, "nowhere".getBytes(StandardCharsets.UTF_8));
        ch.waitForConfirmsOrDie(10_000);
        assertEquals(312, returned.poll(10, TimeUnit.SECONDS));
        GetResponse r = getWithin(ch, q, true);
        assertNotNull(r);
        assertEquals("{\"id\":1}", s(r.getBody()));
        assertEquals(x, r.getEnvelope().getExchange());
        assertEquals("orders.created.eu", r.getEnvelope().getRoutingKey());
        assertEquals("application/json", r.getProps().getContentType());
        assertEquals("c-1", r.getProps().getCorrelationId());
        assertEquals("acme", r.getProps().getHeaders().get("tenant").toString());
        assertEquals(7, ((Number) r.getProps().getHeaders().get("n")).intValue());
        assertNull(ch.basicGet(q, true));
        ch.close();
    }

    @Test
    void rejectedMessagesAreDeadLetteredWithXDeath() throws Exception {
        Channel ch = conn.createChannel();
        String dlq = FjordBroker.unique("java_dlq");
        ch.queueDeclare(dlq, true, false, false, null);
        String work = FjordBroker.unique("java_dl_work");
        ch.queueDeclare(work, true, false, false, Map.of("x-dead-letter-exchange", "", "x-dead-letter-routing-key", dlq));
        ch.confirmSelect();
        ch.basicPublish("", work, null, "poison".getBytes(StandardCharsets.UTF_8));
        ch.waitForConfirmsOrDie(10_000);
        GetResponse first = getWithin(ch, work, false);
        assertFalse(first.getEnvelope().isRedeliver());
        ch.basicNack(first.getEnvelope().getDeliveryTag(), false, true);
        GetResponse again = getWithin(ch, work, false);
        assertTrue(again.getEnvelope().isRedeliver());
        ch.basicReject(again.getEnvelope().getDeliveryTag(), false);
        GetResponse dead = getWithin(ch, dlq, true);
        assertNotNull(dead);
        @SuppressWarnings("unchecked")
        List<Map<String, Object>> deaths = (List<Map<String, Object>>) dead.getProps().getHeaders().get("x-death");
        assertEquals("rejected", deaths.get(0).get("reason").toString());
        assertEquals(work, deaths.get(0).get("queue").toString());
        assertEquals(1L, ((Number) deaths.get(0).get("count")).longValue());
        ch.close();
    }

    @Test
    void channelErrorsCloseOnlyTheChannel() throws Exception {
        Channel ch = conn.createChannel();
        java.io.IOException e = assertThrows(java.io.IOException.class, () -> ch.queueDeclarePassive(FjordBroker.unique("missing")));
        com.rabbitmq.client.ShutdownSignalException sse = (com.rabbitmq.client.ShutdownSignalException) e.getCause();
        assertEquals(404, ((AMQP.Channel.Close) sse.getReason()).getReplyCode());
        assertFalse(ch.isOpen());
        assertTrue(conn.isOpen());
        Channel ok = conn.createChannel();
        assertNotNull(ok.queueDeclare().getQueue());
        ok.close();
    }

    @Test
    void whatJavaPublishesAKafkaConsumerReads() throws Exception {
        assumeTrue(broker.isFjord(), "one broker for every protocol is Fjord's");
        Channel ch = conn.createChannel();
        String q = FjordBroker.unique("java_to_kafka");
        ch.queueDeclare(q, true, false, false, null);
        ch.confirmSelect();
        AMQP.BasicProperties props = new AMQP.BasicProperties.Builder().headers(Map.of("origin", "amqp")).deliveryMode(2).build();
        ch.basicPublish("", q, props, "hello kafka".getBytes(StandardCharsets.UTF_8));
        ch.waitForConfirmsOrDie(10_000);
        ch.close();
        Properties c = new Properties();
        c.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, broker.kafka());
        c.put(ConsumerConfig.GROUP_ID_CONFIG, FjordBroker.unique("java_amqp_group"));
        c.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        try (KafkaConsumer<byte[], byte[]> kc = new KafkaConsumer<>(c, new ByteArrayDeserializer(), new ByteArrayDeserializer())) {
            kc.subscribe(List.of(q));
            List<ConsumerRecord<byte[], byte[]>> records = new ArrayList<>();
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
            while (records.isEmpty() && System.nanoTime() < deadline) {
                kc.poll(Duration.ofMillis(200)).forEach(records::add);
            }
            assertEquals(1, records.size());
            assertEquals("hello kafka", s(records.get(0).value()));
            assertEquals("amqp", s(records.get(0).headers().lastHeader("origin").value()));
            assertEquals("2", s(records.get(0).headers().lastHeader("amqp.delivery-mode").value()));
        }
    }

    /** amqp-client and RocketMQ's Java client on one queue: properties and headers carried both ways. */
    @Test
    void messagesCrossBetweenAmqpAndRocketMq() throws Exception {
        assumeTrue(broker.isFjord(), "one broker for every protocol is Fjord's");
        Channel ch = conn.createChannel();
        String q = FjordBroker.unique("java_to_rmq");
        ch.queueDeclare(q, true, false, false, null);
        ch.confirmSelect();
        AMQP.BasicProperties props = new AMQP.BasicProperties.Builder()
            .correlationId("c-9").headers(Map.of("tenant", "acme")).deliveryMode(2).build();
        ch.basicPublish("", q, props, "from-amqp".getBytes(StandardCharsets.UTF_8));
        ch.waitForConfirmsOrDie(10_000);

        DefaultLitePullConsumer rmq = new DefaultLitePullConsumer(FjordBroker.unique("AmqpReader"));
        rmq.setNamesrvAddr(broker.namesrv());
        rmq.setInstanceName(FjordBroker.unique("amqp-reader"));
        rmq.setConsumeFromWhere(ConsumeFromWhere.CONSUME_FROM_FIRST_OFFSET);
        rmq.subscribe(q, "*");
        rmq.start();
        List<MessageExt> got = new ArrayList<>();
        try {
            FjordBroker.await(Duration.ofSeconds(60), "the AMQP message via RocketMQ", () -> {
                got.addAll(rmq.poll(500));
                return !got.isEmpty();
            });
        } finally {
            rmq.shutdown();
        }
        MessageExt m = got.get(0);
        assertEquals("from-amqp", s(m.getBody()));
        assertEquals("acme", m.getUserProperty("tenant"));
        assertEquals("c-9", m.getUserProperty("amqp.correlation-id"));

        String topic = FjordBroker.unique("RmqToAmqp");
        DefaultMQProducer producer = new DefaultMQProducer(FjordBroker.unique("AmqpCrossProducer"));
        producer.setNamesrvAddr(broker.namesrv());
        producer.setInstanceName(FjordBroker.unique("cross"));
        producer.start();
        try {
            Message out = new Message(topic, "TagA", "order-7", "from-rocketmq".getBytes(StandardCharsets.UTF_8));
            out.putUserProperty("origin", "rocketmq");
            assertEquals(SendStatus.SEND_OK, producer.send(out).getSendStatus());
        } finally {
            producer.shutdown();
        }
        // The topic is a queue for AMQP clients without being declared.
        GetResponse r = getWithin(ch, topic, true);
        assertNotNull(r);
        assertEquals("from-rocketmq", s(r.getBody()));
        assertEquals("TagA", r.getEnvelope().getRoutingKey());
        assertEquals("rocketmq", r.getProps().getHeaders().get("origin").toString());
        ch.close();
    }
}
