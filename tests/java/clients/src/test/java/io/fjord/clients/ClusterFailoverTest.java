package io.fjord.clients;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRebalanceListener;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.Node;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * A KIP-848 consumer (group.protocol=consumer) whose group coordinator is
 * killed: the node that takes the group's offsets partition over restores
 * the group's epochs and assignments, so the consumer keeps its partitions
 * (no onPartitionsLost, no revocation) and its commits are accepted. Its
 * own cluster, since a node stays down.
 */
@Timeout(180)
class ClusterFailoverTest {
    static FjordCluster cluster;

    @BeforeAll
    static void start() throws Exception {
        String peer = System.getenv("FJORD_PEER");
        assumeTrue(peer == null || peer.isEmpty(), "a Fjord cluster only");
        cluster = FjordCluster.start(3);
        try (Admin admin = admin(1)) {
            FjordBroker.await(Duration.ofSeconds(60), "group coordinators placed on three replicas", () -> {
                try {
                    TopicDescription d = admin.describeTopics(List.of("__fjord_offsets"))
                            .allTopicNames().get(10, TimeUnit.SECONDS).get("__fjord_offsets");
                    return d.partitions().stream().allMatch(p ->
                            p.leader() != null && p.leader().id() >= 0 && p.isr().size() == 3);
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

    static void produce(String bootstrap, String topic, String prefix, int n) throws Exception {
        Properties pp = new Properties();
        pp.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        pp.put(ProducerConfig.ACKS_CONFIG, "all");
        pp.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        pp.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        try (KafkaProducer<String, String> p = new KafkaProducer<>(pp)) {
            for (int i = 0; i < n; i++) {
                p.send(new ProducerRecord<>(topic, prefix + i, prefix + i));
            }
            p.flush();
        }
    }

    @Test
    void aConsumerProtocolGroupKeepsItsAssignmentWhenItsCoordinatorIsKilled() throws Exception {
        String topic = FjordBroker.unique("failover");
        try (Admin admin = admin(1)) {
            admin.createTopics(List.of(new NewTopic(topic, 3, (short) 3))).all().get(30, TimeUnit.SECONDS);
        }
        produce(cluster.kafkaBootstrap(), topic, "a", 100);
        String group = FjordBroker.unique("failover_group");
        Properties cp = new Properties();
        cp.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, cluster.kafkaBootstrap());
        cp.put(ConsumerConfig.GROUP_ID_CONFIG, group);
        cp.put(ConsumerConfig.GROUP_PROTOCOL_CONFIG, "consumer");
        cp.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        cp.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, false);
        cp.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        cp.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        List<String> events = new CopyOnWriteArrayList<>();
        Set<String> seen = new HashSet<>();
        try (KafkaConsumer<String, String> c = new KafkaConsumer<>(cp)) {
            c.subscribe(List.of(topic), new ConsumerRebalanceListener() {
                @Override
                public void onPartitionsAssigned(Collection<TopicPartition> ps) {
                    if (!ps.isEmpty()) {
                        events.add("assigned " + ps.size());
                    }
                }

                @Override
                public void onPartitionsRevoked(Collection<TopicPartition> ps) {
                    if (!ps.isEmpty()) {
                        events.add("revoked " + ps.size());
                    }
                }

                @Override
                public void onPartitionsLost(Collection<TopicPartition> ps) {
                    if (!ps.isEmpty()) {
                        events.add("lost " + ps.size());
                    }
                }
            });
            consume(c, seen, 100, "before the kill");
            int coordinator;
            try (Admin admin = admin(1)) {
                Node node = admin.describeConsumerGroups(List.of(group)).all().get(30, TimeUnit.SECONDS)
                        .get(group).coordinator();
                assertNotNull(node);
                coordinator = node.id();
            }
            cluster.kill(coordinator);
            int survivor = coordinator == 1 ? 2 : 1;
            produce(cluster.addr(survivor, "kafka"), topic, "b", 100);
            consume(c, seen, 200, "after the coordinator was killed");
            // Epochs and assignment held through the move: one assignment,
            // never revoked or lost (closing revokes it, after this check).
            assertEquals(List.of("assigned 3"), new ArrayList<>(events));
        }
    }

    static void consume(KafkaConsumer<String, String> c, Set<String> seen, int n, String what) throws Exception {
        FjordBroker.await(Duration.ofSeconds(90), n + " records " + what, () -> {
            for (ConsumerRecord<String, String> r : c.poll(Duration.ofMillis(200))) {
                seen.add(r.value());
            }
            return seen.size() >= n;
        });
        c.commitSync(Duration.ofSeconds(30));
    }
}
