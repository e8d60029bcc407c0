package io.fjord.clients;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.stream.Collectors;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.DescribeClusterResult;
import org.apache.kafka.clients.admin.DescribeTopicsOptions;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.Node;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.TopicPartitionInfo;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.apache.rocketmq.client.consumer.DefaultMQPushConsumer;
import org.apache.rocketmq.client.consumer.listener.ConsumeConcurrentlyStatus;
import org.apache.rocketmq.client.consumer.listener.MessageListenerConcurrently;
import org.apache.rocketmq.client.producer.DefaultMQProducer;
import org.apache.rocketmq.client.producer.SendResult;
import org.apache.rocketmq.client.producer.SendStatus;
import org.apache.rocketmq.common.consumer.ConsumeFromWhere;
import org.apache.rocketmq.common.message.Message;
import org.apache.rocketmq.common.message.MessageExt;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * The Java Kafka and RocketMQ clients against a 3-node Fjord cluster:
 * bootstrapped from one node they find every leader, groups are
 * coordinated wherever their offsets partition is led, and a RocketMQ
 * consumer's progress, committed to each queue's broker, reaches the
 * group's coordinator (read back with the Kafka Admin client).
 */
@Timeout(180)
class ClusterClientTest {
    static FjordCluster cluster;

    @BeforeAll
    static void start() throws Exception {
        // Peer brokers run as single nodes.
        String peer = System.getenv("FJORD_PEER");
        assumeTrue(peer == null || peer.isEmpty(), "a Fjord cluster only");
        cluster = FjordCluster.start(3);
        try (Admin admin = admin(1)) {
            FjordBroker.await(Duration.ofSeconds(60), "every node in the metadata", () -> {
                try {
                    DescribeClusterResult d = admin.describeCluster();
                    return d.nodes().get(10, TimeUnit.SECONDS).size() == 3 && d.controller().get(10, TimeUnit.SECONDS) != null;
                } catch (Exception e) {
                    return false;
                }
            });
            // Group coordinators are placed once the controllers serve;
            // until then group requests get retriable errors.
            FjordBroker.await(Duration.ofSeconds(60), "group coordinators placed", () -> {
                try {
                    TopicDescription d = admin.describeTopics(List.of("__fjord_offsets"))
                            .allTopicNames().get(10, TimeUnit.SECONDS).get("__fjord_offsets");
                    return d.partitions().stream().allMatch(p -> p.leader() != null && p.leader().id() >= 0);
                } catch (Exception e) {
                    return false;
                }
            });
        }
    }

    @AfterAll
    static void stop() {
        if (cluster != null) {
            cluster.close();
        }
    }

    static Admin admin(int node) {
        return Admin.create(Map.of(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, cluster.addr(node, "kafka")));
    }

    /** Creates `topic` through `node` and waits until every node routes all of it. */
    static Map<Integer, Integer> createTopic(int node, String topic, int partitions) throws Exception {
        try (Admin admin = admin(node)) {
            admin.createTopics(List.of(new NewTopic(topic, partitions, (short) 1))).all().get(30, TimeUnit.SECONDS);
        }
        Map<Integer, Integer> leaders = new HashMap<>();
        for (int n = 1; n <= 3; n++) {
            try (Admin admin = admin(n)) {
                FjordBroker.await(Duration.ofSeconds(20), topic + " on node " + n, () -> {
                    try {
                        TopicDescription d = admin.describeTopics(List.of(topic)).allTopicNames().get(10, TimeUnit.SECONDS).get(topic);
                        leaders.clear();
                        for (TopicPartitionInfo p : d.partitions()) {
                            if (p.leader() != null && p.leader().id() >= 0) {
                                leaders.put(p.partition(), p.leader().id());
                            }
                        }
                        return leaders.size() == partitions;
                    } catch (Exception e) {
                        return false;
                    }
                });
            }
        }
        return leaders;
    }

    /**
     * describeTopics (DescribeTopicPartitions, two partitions per response)
     * through another node than the one that created the topic: three
     * replicas per partition, all in sync, the leader among them.
     */
    @Test
    void describeTopicsShowsEveryReplicaAndTheInSyncSet() throws Exception {
        String topic = FjordBroker.unique("cluster_rf3");
        try (Admin admin = admin(1)) {
            admin.createTopics(List.of(new NewTopic(topic, 3, (short) 3))).all().get(30, TimeUnit.SECONDS);
        }
        try (Admin admin = admin(2)) {
            FjordBroker.await(Duration.ofSeconds(30), topic + " in sync on three replicas", () -> {
                try {
                    TopicDescription d = admin.describeTopics(List.of(topic),
                            new DescribeTopicsOptions().partitionSizeLimitPerResponse(2)).allTopicNames()
                            .get(10, TimeUnit.SECONDS).get(topic);
                    return d.partitions().size() == 3 && d.partitions().stream().allMatch(p ->
                            p.replicas().size() == 3 && p.isr().size() == 3
                                    && p.leader() != null && p.replicas().contains(p.leader()));
                } catch (Exception e) {
                    return false;
                }
            });
        }
    }

    @Test
    void kafkaProducerAndConsumerGroupUseEveryNode() throws Exception {
        String topic = FjordBroker.unique("cluster_kafka");
        Map<Integer, Integer> leaders = createTopic(3, topic, 12);
        assertEquals(Set.of(1, 2, 3), new HashSet<>(leaders.values()), "leaders spread: " + leaders);

        Properties pp = new Properties();
        pp.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, cluster.addr(1, "kafka"));
        pp.put(ProducerConfig.ACKS_CONFIG, "all");
        pp.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, true);
        pp.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        pp.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        Set<String> sent = new HashSet<>();
        Set<Integer> partitionsWritten = new HashSet<>();
        try (KafkaProducer<String, String> p = new KafkaProducer<>(pp)) {
            List<Future<RecordMetadata>> acks = new ArrayList<>();
            for (int i = 0; i < 600; i++) {
                String v = "v" + i;
                sent.add(v);
                acks.add(p.send(new ProducerRecord<>(topic, "k" + i, v)));
            }
            for (Future<RecordMetadata> f : acks) {
                partitionsWritten.add(f.get(30, TimeUnit.SECONDS).partition());
            }
        }
        assertEquals(12, partitionsWritten.size());

        String group = FjordBroker.unique("cluster_group");
        Properties cp = new Properties();
        cp.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, cluster.addr(2, "kafka"));
        cp.put(ConsumerConfig.GROUP_ID_CONFIG, group);
        cp.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        cp.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, false);
        cp.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        cp.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        Map<String, Integer> seen = new HashMap<>();
        try (KafkaConsumer<String, String> c = new KafkaConsumer<>(cp)) {
            c.subscribe(List.of(topic));
            FjordBroker.await(Duration.ofSeconds(90), "all 600 records", () -> {
                for (ConsumerRecord<String, String> r : c.poll(Duration.ofMillis(200))) {
                    seen.merge(r.value(), 1, Integer::sum);
                }
                return seen.size() >= sent.size();
            });
            c.commitSync(Duration.ofSeconds(30));
        }
        assertEquals(sent, seen.keySet());
        assertTrue(seen.values().stream().allMatch(n -> n == 1), "each record once");

        // The group's offsets are on its coordinator: read through node 3.
        try (Admin admin = admin(3)) {
            Map<TopicPartition, OffsetAndMetadata> committed =
                    admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get(30, TimeUnit.SECONDS);
            assertEquals(12, committed.size(), committed.toString());
            assertEquals(600L, committed.values().stream().mapToLong(OffsetAndMetadata::offset).sum());
            Node coordinator = admin.describeConsumerGroups(List.of(group)).all().get(30, TimeUnit.SECONDS).get(group).coordinator();
            assertNotNull(coordinator);
        }
    }

    @Test
    void rocketmqProducerAndPushConsumerUseEveryBroker() throws Exception {
        String topic = FjordBroker.unique("ClusterRmq");
        createTopic(1, topic, 6);
        DefaultMQProducer producer = new DefaultMQProducer(FjordBroker.unique("cluster_pg"));
        producer.setNamesrvAddr(cluster.addr(1, "rocketmq_namesrv"));
        producer.setInstanceName(FjordBroker.unique("cluster_producer"));
        producer.start();
        Set<String> sent = new HashSet<>();
        Set<String> brokers = new HashSet<>();
        try {
            for (int i = 0; i < 60; i++) {
                String body = "m-" + i;
                SendResult r = producer.send(new Message(topic, "t", body.getBytes(StandardCharsets.UTF_8)));
                assertEquals(SendStatus.SEND_OK, r.getSendStatus(), r.toString());
                brokers.add(r.getMessageQueue().getBrokerName());
                sent.add(body);
            }
        } finally {
            producer.shutdown();
        }
        assertEquals(Set.of("broker-1", "broker-2", "broker-3"), brokers);

        String group = FjordBroker.unique("cluster_cg");
        Map<String, Integer> got = new ConcurrentHashMap<>();
        DefaultMQPushConsumer consumer = new DefaultMQPushConsumer(group);
        consumer.setNamesrvAddr(cluster.addr(2, "rocketmq_namesrv"));
        consumer.setInstanceName(FjordBroker.unique("cluster_consumer"));
        consumer.setConsumeFromWhere(ConsumeFromWhere.CONSUME_FROM_FIRST_OFFSET);
        consumer.setPersistConsumerOffsetInterval(500);
        consumer.subscribe(topic, "*");
        consumer.registerMessageListener((MessageListenerConcurrently) (msgs, ctx) -> {
            for (MessageExt m : msgs) {
                got.merge(new String(m.getBody(), StandardCharsets.UTF_8), 1, Integer::sum);
            }
            return ConsumeConcurrentlyStatus.CONSUME_SUCCESS;
        });
        consumer.start();
        try {
            FjordBroker.await(Duration.ofSeconds(60), "all 60 messages", () -> got.size() >= sent.size());
            assertEquals(sent, got.keySet());
            assertTrue(got.values().stream().allMatch(n -> n == 1), "each message once: " + got);
            // Each queue's broker took the group's progress and handed it
            // to the group's coordinator, whichever node that is: the
            // Kafka Admin client, through node 3, reads all of it.
            try (Admin admin = admin(3)) {
                Map<TopicPartition, OffsetAndMetadata> last = new ConcurrentHashMap<>();
                try {
                    FjordBroker.await(Duration.ofSeconds(30), "the group's progress at its coordinator", () -> {
                        try {
                            Map<TopicPartition, OffsetAndMetadata> offsets = admin.listConsumerGroupOffsets(group)
                                    .partitionsToOffsetAndMetadata().get(10, TimeUnit.SECONDS);
                            last.clear();
                            last.putAll(offsets);
                            // The consumer also follows its retry topic.
                            Collection<OffsetAndMetadata> values = offsets.entrySet().stream()
                                    .filter(e -> e.getKey().topic().equals(topic))
                                    .map(Map.Entry::getValue)
                                    .collect(Collectors.toList());
                            return values.size() == 6 && values.stream().mapToLong(OffsetAndMetadata::offset).sum() == 60;
                        } catch (Exception e) {
                            return false;
                        }
                    });
                } catch (AssertionError e) {
                    throw new AssertionError(e.getMessage() + "; last seen: " + last, e);
                }
            }
        } finally {
            consumer.shutdown();
        }
        assertEquals(60, got.values().stream().collect(Collectors.summingInt(Integer::intValue)));
    }

    @Test
    void subscriptionGroupSettingsSentToOneBrokerHoldOnEvery() throws Exception {
        String group = FjordBroker.unique("cluster_sub");
        org.apache.rocketmq.tools.admin.DefaultMQAdminExt admin = new org.apache.rocketmq.tools.admin.DefaultMQAdminExt();
        admin.setNamesrvAddr(cluster.addr(1, "rocketmq_namesrv"));
        admin.setInstanceName(FjordBroker.unique("cluster_admin"));
        admin.start();
        try {
            org.apache.rocketmq.common.subscription.SubscriptionGroupConfig c =
                    new org.apache.rocketmq.common.subscription.SubscriptionGroupConfig();
            c.setGroupName(group);
            c.setRetryMaxTimes(2);
            // To broker-1 only: the setting is the cluster's.
            admin.createAndUpdateSubscriptionGroupConfig(cluster.addr(1, "rocketmq_broker"), c);
            for (int n = 1; n <= 3; n++) {
                String addr = cluster.addr(n, "rocketmq_broker");
                FjordBroker.await(Duration.ofSeconds(20), "the group's settings on broker-" + n, () -> {
                    try {
                        org.apache.rocketmq.common.subscription.SubscriptionGroupConfig got =
                                admin.examineSubscriptionGroupConfig(addr, group);
                        return got != null && got.getRetryMaxTimes() == 2;
                    } catch (Exception e) {
                        return false;
                    }
                });
            }
        } finally {
            admin.shutdown();
        }
    }
}
