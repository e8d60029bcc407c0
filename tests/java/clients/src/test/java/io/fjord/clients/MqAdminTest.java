package io.fjord.clients;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;

import org.apache.rocketmq.client.consumer.DefaultMQPushConsumer;
import org.apache.rocketmq.client.consumer.listener.ConsumeConcurrentlyStatus;
import org.apache.rocketmq.client.consumer.listener.MessageListenerConcurrently;
import org.apache.rocketmq.client.producer.DefaultMQProducer;
import org.apache.rocketmq.client.producer.SendResult;
import org.apache.rocketmq.common.consumer.ConsumeFromWhere;
import org.apache.rocketmq.common.message.Message;
import org.apache.rocketmq.tools.command.MQAdminStartup;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * `mqadmin` (rocketmq-tools' MQAdminStartup, in this JVM) against Fjord's
 * name server and broker ports: the seed's `clusterList` and the everyday
 * commands. Every command must answer within 30 s.
 */
class MqAdminTest {
    static FjordBroker broker;
    static DefaultMQProducer producer;
    static DefaultMQPushConsumer consumer;
    static final String TOPIC = FjordBroker.unique("AdminTopic");
    static final String GROUP = FjordBroker.unique("AdminGroup");
    static SendResult sent;
    static final ExecutorService runner = Executors.newSingleThreadExecutor();

    @BeforeAll
    static void start() throws Exception {
        broker = FjordBroker.get();
        producer = new DefaultMQProducer(FjordBroker.unique("admin_producer"));
        producer.setNamesrvAddr(broker.namesrv());
        producer.setInstanceName(FjordBroker.unique("admin"));
        producer.start();
        sent = producer.send(new Message(TOPIC, "t", "ADMIN-KEY", "admin".getBytes(StandardCharsets.UTF_8)));
        Set<String> got = ConcurrentHashMap.newKeySet();
        consumer = new DefaultMQPushConsumer(GROUP);
        consumer.setNamesrvAddr(broker.namesrv());
        consumer.setInstanceName(FjordBroker.unique("admin_consumer"));
        consumer.setConsumeFromWhere(ConsumeFromWhere.CONSUME_FROM_FIRST_OFFSET);
        consumer.subscribe(TOPIC, "*");
        consumer.registerMessageListener((MessageListenerConcurrently) (msgs, ctx) -> {
            msgs.forEach(m -> got.add(m.getMsgId()));
            return ConsumeConcurrentlyStatus.CONSUME_SUCCESS;
        });
        consumer.start();
        FjordBroker.await(Duration.ofSeconds(60), "the consumer's message", () -> !got.isEmpty());
    }

    @AfterAll
    static void stop() {
        consumer.shutdown();
        producer.shutdown();
        runner.shutdownNow();
    }

    /** Runs `mqadmin ARGS -n <name server>`; its standard output. */
    static String mqadmin(String... args) throws Exception {
        List<String> all = new ArrayList<>(List.of(args));
        all.add("-n");
        all.add(broker.namesrv());
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        PrintStream saved = System.out;
        Future<?> run;
        synchronized (MqAdminTest.class) {
            System.setOut(new PrintStream(out, true, StandardCharsets.UTF_8));
            try {
                run = runner.submit(() -> MQAdminStartup.main0(all.toArray(new String[0]), null));
                run.get(30, TimeUnit.SECONDS);
            } finally {
                System.setOut(saved);
            }
        }
        String text = out.toString(StandardCharsets.UTF_8);
        System.err.println("mqadmin " + String.join(" ", args) + "\n" + text);
        return text;
    }

    static String brokerAddr() {
        return broker.addr("rocketmq_broker");
    }

    /** The cluster name, as `clusterList` shows it (Fjord's `node.cluster_name`). */
    static String cluster() throws Exception {
        String[] lines = mqadmin("clusterList").split("\n");
        return lines[1].trim().split("\\s+")[0];
    }

    @Test
    void clusterListAsInTheSeed() throws Exception {
        String out = mqadmin("clusterList");
        String[] lines = out.split("\n");
        assertTrue(lines[0].startsWith("#Cluster Name"), out);
        String[] row = lines[1].trim().split("\\s+");
        assertEquals(broker.clusterName(), row[0], out);
        assertEquals(broker.brokerName(), row[1], out);
        assertEquals("0", row[2], out);
        assertEquals(brokerAddr(), row[3], out);
        if (broker.isFjord()) {
            assertTrue(out.contains("Fjord"), "the version column: " + out);
        }
        assertFalse(out.contains("Exception"), out);
    }

    @Test
    void topicListRouteAndStatus() throws Exception {
        assertTrue(mqadmin("topicList").contains(TOPIC));
        String route = mqadmin("topicRoute", "-t", TOPIC);
        assertTrue(route.contains("\"brokerName\"") && route.contains(broker.brokerName()), route);
        String status = mqadmin("topicStatus", "-t", TOPIC);
        assertTrue(status.contains("#Broker Name") && status.contains(broker.brokerName()), status);
    }

    @Test
    void updateAndDeleteTopic() throws Exception {
        String topic = FjordBroker.unique("AdminMade");
        String made = mqadmin("updateTopic", "-c", cluster(), "-t", topic, "-r", "4", "-w", "4");
        assertTrue(made.contains("create topic to"), made);
        assertTrue(mqadmin("topicList").contains(topic));
        String route = mqadmin("topicRoute", "-t", topic);
        assertTrue(route.contains("\"writeQueueNums\":4"), route);
        mqadmin("deleteTopic", "-c", cluster(), "-t", topic);
        assertFalse(mqadmin("topicList").contains(topic));
    }

    @Test
    void consumerProgressAndConnection() throws Exception {
        String progress = mqadmin("consumerProgress", "-g", GROUP);
        assertTrue(progress.contains("#Topic") && progress.contains(TOPIC), progress);
        String conn = mqadmin("consumerConnection", "-g", GROUP);
        assertTrue(conn.contains("#ClientId") || conn.contains("ClientId"), conn);
        assertTrue(conn.contains(TOPIC), conn);
    }

    @Test
    void queryMessagesByKeyAndId() throws Exception {
        String byKey = mqadmin("queryMsgByKey", "-t", TOPIC, "-k", "ADMIN-KEY");
        assertTrue(byKey.contains("ADMIN-KEY") || byKey.contains(sent.getMsgId()), byKey);
        String byId = mqadmin("queryMsgById", "-i", sent.getOffsetMsgId());
        assertTrue(byId.contains(TOPIC), byId);
        assertTrue(byId.contains("ADMIN-KEY"), byId);
    }

    @Test
    void resetOffsetByTime() throws Exception {
        String out = mqadmin("resetOffsetByTime", "-g", GROUP, "-t", TOPIC, "-s", "0");
        assertTrue(out.contains("brokerName") || out.contains("rollback consumer offset"), out);
    }

    @Test
    void brokerStatusAndConfig() throws Exception {
        String status = mqadmin("brokerStatus", "-b", brokerAddr());
        assertTrue(status.contains("putTps") && status.contains("brokerVersionDesc"), status);
        String config = mqadmin("getBrokerConfig", "-b", brokerAddr());
        assertTrue(config.contains("brokerName") && config.contains(broker.brokerName()), config);
    }

    @Test
    void updateSubGroupSetsRetries() throws Exception {
        String group = FjordBroker.unique("AdminSub");
        String out = mqadmin("updateSubGroup", "-c", cluster(), "-g", group, "-r", "3");
        assertTrue(out.contains("create subscription group to"), out);
        assertEquals(true, out.contains(group), out);
        // Read back as the dashboard and `getConsumerConfig` do
        // (GET_ALL_SUBSCRIPTIONGROUP_CONFIG).
        org.apache.rocketmq.tools.admin.DefaultMQAdminExt admin = new org.apache.rocketmq.tools.admin.DefaultMQAdminExt();
        admin.setNamesrvAddr(broker.namesrv());
        admin.setInstanceName(FjordBroker.unique("sub_group_admin"));
        admin.start();
        try {
            org.apache.rocketmq.common.subscription.SubscriptionGroupConfig c =
                    admin.examineSubscriptionGroupConfig(brokerAddr(), group);
            assertEquals(group, c.getGroupName());
            assertEquals(3, c.getRetryMaxTimes());
            assertTrue(c.isConsumeEnable());
        } finally {
            admin.shutdown();
        }
    }
}
