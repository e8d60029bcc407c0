package io.fjord.clients;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.stream.Collectors;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.AlterConfigOp;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.admin.DescribeTopicsOptions;
import org.apache.kafka.clients.admin.NewPartitions;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.RecordsToDelete;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.consumer.OffsetAndTimestamp;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.errors.UnknownTopicOrPartitionException;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/** The Kafka Java client (kafka-clients) against Fjord's Kafka listener. */
@Timeout(value = 120, unit = TimeUnit.SECONDS)
class KafkaClientTest {
    static FjordBroker broker;

    @BeforeAll
    static void start() {
        broker = FjordBroker.get();
    }

    static KafkaProducer<String, String> producer(Map<String, Object> extra) {
        Map<String, Object> c = new HashMap<>();
        c.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, broker.kafka());
        c.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class);
        c.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class);
        c.putAll(extra);
        return new KafkaProducer<>(c);
    }

    static KafkaConsumer<String, String> consumer(String group, Map<String, Object> extra) {
        Map<String, Object> c = new HashMap<>();
        c.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, broker.kafka());
        c.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class);
        c.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class);
        c.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        if (group != null) {
            c.put(ConsumerConfig.GROUP_ID_CONFIG, group);
        }
        c.putAll(extra);
        return new KafkaConsumer<>(c);
    }

    static Admin admin() {
        Properties p = new Properties();
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, broker.kafka());
        return Admin.create(p);
    }

    /** Polls until `n` records arrived (or fails after 60 s). */
    static List<ConsumerRecord<String, String>> pollN(KafkaConsumer<String, String> c, int n) {
        List<ConsumerRecord<String, String>> out = new ArrayList<>();
        long deadline = System.currentTimeMillis() + 60_000;
        while (out.size() < n) {
            assertTrue(System.currentTimeMillis() < deadline, "only " + out.size() + " of " + n + " records");
            c.poll(Duration.ofMillis(200)).forEach(out::add);
        }
        return out;
    }

    /** The seed article's producer and consumer: send, subscribe, poll, commitAsync. */
    @ParameterizedTest
    @ValueSource(strings = {"classic", "consumer"})
    void seedProducerAndGroupConsumer(String protocol) throws Exception {
        String topic = FjordBroker.unique("topic_name_" + protocol);
        try (KafkaProducer<String, String> p = producer(Map.of())) {
            for (int i = 0; i < 20; i++) {
                RecordMetadata md = p.send(new ProducerRecord<>(topic, "k" + i, "message " + i)).get();
                assertTrue(md.offset() >= 0);
            }
        }
        String group = FjordBroker.unique("group_" + protocol);
        try (KafkaConsumer<String, String> c = consumer(group, Map.of(ConsumerConfig.GROUP_PROTOCOL_CONFIG, protocol))) {
            c.subscribe(List.of(topic));
            List<ConsumerRecord<String, String>> got = pollN(c, 20);
            assertEquals(20, got.stream().map(ConsumerRecord::value).collect(Collectors.toSet()).size());
            c.commitSync();
            TopicPartition tp = new TopicPartition(topic, 0);
            OffsetAndMetadata committed = c.committed(Set.of(tp)).get(tp);
            assertNotNull(committed, "committed offset");
            assertEquals(20, committed.offset());
            c.commitAsync();
        }
    }

    @ParameterizedTest
    @ValueSource(strings = {"none", "gzip", "snappy", "lz4", "zstd"})
    void idempotentProducerWithEachCodec(String codec) throws Exception {
        String topic = FjordBroker.unique("codec_" + codec);
        try (KafkaProducer<String, String> p = producer(Map.of(ProducerConfig.COMPRESSION_TYPE_CONFIG, codec,
                ProducerConfig.LINGER_MS_CONFIG, 5))) {
            for (int i = 0; i < 200; i++) {
                p.send(new ProducerRecord<>(topic, "key-" + i, "value-" + i + "-" + "x".repeat(i)));
            }
            p.flush();
        }
        try (KafkaConsumer<String, String> c = consumer(null, Map.of())) {
            TopicPartition tp = new TopicPartition(topic, 0);
            c.assign(List.of(tp));
            c.seekToBeginning(List.of(tp));
            List<ConsumerRecord<String, String>> got = pollN(c, 200);
            for (int i = 0; i < 200; i++) {
                assertEquals(i, got.get(i).offset(), "idempotent: no duplicates, no gaps");
                assertEquals("key-" + i, got.get(i).key());
                assertEquals("value-" + i + "-" + "x".repeat(i), got.get(i).value());
            }
        }
    }

    @Test
    void seekOffsetsForTimesAndPauseResume() throws Exception {
        String topic = FjordBroker.unique("seek");
        long t0 = System.currentTimeMillis();
        try (KafkaProducer<String, String> p = producer(Map.of())) {
            for (int i = 0; i < 10; i++) {
                p.send(new ProducerRecord<>(topic, null, t0 + i * 1000L, "k", "v" + i)).get();
            }
        }
        try (KafkaConsumer<String, String> c = consumer(null, Map.of())) {
            TopicPartition tp = new TopicPartition(topic, 0);
            c.assign(List.of(tp));
            Map<TopicPartition, OffsetAndTimestamp> at = c.offsetsForTimes(Map.of(tp, t0 + 4500));
            assertEquals(5, at.get(tp).offset(), "first record at or after the time");
            c.seek(tp, at.get(tp).offset());
            assertEquals("v5", pollN(c, 1).get(0).value());
            c.pause(List.of(tp));
            ConsumerRecords<String, String> paused = c.poll(Duration.ofMillis(500));
            assertTrue(paused.isEmpty(), "nothing while paused");
            c.resume(List.of(tp));
            c.seek(tp, 9);
            assertEquals("v9", pollN(c, 1).get(0).value());
            assertEquals(10L, c.endOffsets(List.of(tp)).get(tp));
            assertEquals(0L, c.beginningOffsets(List.of(tp)).get(tp));
        }
    }

    @Test
    void adminTopicsConfigsPartitionsGroupsAndRecords() throws Exception {
        String topic = FjordBroker.unique("admin");
        try (Admin a = admin()) {
            assertNotNull(a.describeCluster().clusterId().get());
            assertEquals(1, a.describeCluster().nodes().get().size());
            a.createTopics(List.of(new NewTopic(topic, 2, (short) 1).configs(Map.of("retention.ms", "3600000"))))
                    .all().get();
            assertTrue(a.listTopics().names().get().contains(topic));
            TopicDescription d = a.describeTopics(List.of(topic)).allTopicNames().get().get(topic);
            assertEquals(2, d.partitions().size());

            ConfigResource res = new ConfigResource(ConfigResource.Type.TOPIC, topic);
            Config cfg = a.describeConfigs(List.of(res)).all().get().get(res);
            assertEquals("3600000", cfg.get("retention.ms").value());
            a.incrementalAlterConfigs(Map.of(res, List.of(new AlterConfigOp(new ConfigEntry("retention.ms", "7200000"),
                    AlterConfigOp.OpType.SET)))).all().get();
            assertEquals("7200000", a.describeConfigs(List.of(res)).all().get().get(res).get("retention.ms").value());

            a.createPartitions(Map.of(topic, NewPartitions.increaseTo(3))).all().get();
            assertEquals(3, a.describeTopics(List.of(topic)).allTopicNames().get().get(topic).partitions().size());
            // describeTopics pages through DescribeTopicPartitions (KIP-966):
            // one partition per response here, so the client follows the
            // broker's cursor across partitions and topics.
            String second = FjordBroker.unique("admin-b");
            a.createTopics(List.of(new NewTopic(second, 2, (short) 1))).all().get();
            Map<String, TopicDescription> paged = a.describeTopics(List.of(topic, second),
                    new DescribeTopicsOptions().partitionSizeLimitPerResponse(1)).allTopicNames().get();
            assertEquals(List.of(0, 1, 2), paged.get(topic).partitions().stream().map(p -> p.partition()).toList());
            assertEquals(List.of(0, 1), paged.get(second).partitions().stream().map(p -> p.partition()).toList());
            var first = paged.get(second).partitions().get(0);
            assertEquals(1, first.replicas().size());
            assertEquals(first.replicas(), first.isr());
            assertEquals(first.leader(), first.replicas().get(0));
            ExecutionException missing = assertThrows(ExecutionException.class,
                    () -> a.describeTopics(List.of(FjordBroker.unique("missing"))).allTopicNames().get());
            assertTrue(missing.getCause() instanceof UnknownTopicOrPartitionException, missing.toString());

            TopicPartition tp = new TopicPartition(topic, 0);
            try (KafkaProducer<String, String> p = producer(Map.of())) {
                for (int i = 0; i < 10; i++) {
                    p.send(new ProducerRecord<>(topic, 0, "k", "v" + i)).get();
                }
            }
            a.deleteRecords(Map.of(tp, RecordsToDelete.beforeOffset(4))).all().get();
            try (KafkaConsumer<String, String> c = consumer(null, Map.of())) {
                assertEquals(4L, c.beginningOffsets(List.of(tp)).get(tp), "log start after deleteRecords");
            }

            String group = FjordBroker.unique("admin_group");
            a.alterConsumerGroupOffsets(group, Map.of(tp, new OffsetAndMetadata(7))).all().get();
            Map<TopicPartition, OffsetAndMetadata> offsets =
                    a.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get();
            assertEquals(7, offsets.get(tp).offset());
            a.deleteConsumerGroupOffsets(group, Set.of(tp)).all().get();
            assertFalse(a.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get().containsKey(tp));
            Collection<?> groups = a.listConsumerGroups().all().get();
            assertNotNull(groups);

            a.deleteTopics(List.of(topic)).all().get();
            assertFalse(a.listTopics().names().get().contains(topic));
        }
    }

    /** KIP-848 group configs (`kafka-configs --entity-type groups`): set, read back, refused out of range, deleted. */
    @Test
    void groupConfigsAreSetDescribedAndValidated() throws Exception {
        String group = FjordBroker.unique("cfg_group");
        ConfigResource res = new ConfigResource(ConfigResource.Type.GROUP, group);
        try (Admin a = admin()) {
            a.incrementalAlterConfigs(Map.of(res, List.of(
                    new AlterConfigOp(new ConfigEntry("consumer.session.timeout.ms", "50000"), AlterConfigOp.OpType.SET),
                    new AlterConfigOp(new ConfigEntry("consumer.heartbeat.interval.ms", "6000"), AlterConfigOp.OpType.SET))))
                    .all().get();
            Config cfg = a.describeConfigs(List.of(res)).all().get().get(res);
            assertEquals("50000", cfg.get("consumer.session.timeout.ms").value());
            assertEquals("6000", cfg.get("consumer.heartbeat.interval.ms").value());

            // Below the broker's minimum: refused, nothing changed.
            java.util.concurrent.ExecutionException e = org.junit.jupiter.api.Assertions.assertThrows(
                    java.util.concurrent.ExecutionException.class,
                    () -> a.incrementalAlterConfigs(Map.of(res, List.of(new AlterConfigOp(
                            new ConfigEntry("consumer.heartbeat.interval.ms", "10"), AlterConfigOp.OpType.SET)))).all().get());
            assertTrue(e.getCause() instanceof org.apache.kafka.common.errors.InvalidConfigurationException
                    || e.getCause() instanceof org.apache.kafka.common.errors.InvalidRequestException, e.toString());
            assertEquals("6000", a.describeConfigs(List.of(res)).all().get().get(res)
                    .get("consumer.heartbeat.interval.ms").value());

            a.incrementalAlterConfigs(Map.of(res, List.of(new AlterConfigOp(
                    new ConfigEntry("consumer.heartbeat.interval.ms", ""), AlterConfigOp.OpType.DELETE)))).all().get();
            Config after = a.describeConfigs(List.of(res)).all().get().get(res);
            assertFalse("6000".equals(after.get("consumer.heartbeat.interval.ms").value()), after.toString());
            assertEquals("50000", after.get("consumer.session.timeout.ms").value());
        }
    }
}
