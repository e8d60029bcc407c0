"""A 5-node cluster with 5 controllers, started for this test alone: the
quorum survives the loss of two voters (three of five remain),
partitions and group coordinators spread over all five nodes, and a
decommissioned node's replicas move to the others with their data.
"""

import subprocess
import tempfile
import uuid
from collections import Counter
from pathlib import Path

from conftest import Cluster, wait_for
from fjord_harness import fjord_bin
from test_kafka_cluster import consume_all, create_topic, leaders, metadata, produce


def test_five_nodes_survive_the_loss_of_two_controllers():
    with tempfile.TemporaryDirectory(prefix="fjord-cluster5-") as d:
        c = Cluster(Path(d), n=5, voters=5).start()
        try:
            assert sorted(metadata(c.node(5)).brokers) == [1, 2, 3, 4, 5]
            topic = f"five-{uuid.uuid4().hex[:8]}"
            create_topic(c.node(4), topic, 10, c)
            assert Counter(leaders(c.node(1), topic).values()) == {1: 2, 2: 2, 3: 2, 4: 2, 5: 2}
            values = [f"v{i}" for i in range(200)]
            produce(c.node(5).bootstrap, topic, values)
            assert set(consume_all(c.node(2).bootstrap, topic, f"g-{topic}", len(values))) == set(values)

            # Two voters down, the controller leader among them.
            leader = metadata(c.node(1)).controller_id
            victims = [leader, next(i for i in range(1, 6) if i != leader)]
            for v in victims:
                c.kill(v)
            alive = [n for i, n in enumerate(c.nodes, start=1) if i not in victims]
            wait_for(lambda: metadata(alive[0]).controller_id not in (-1, *victims), 20, "a new controller leader")
            # A new leader grants every node a full lease first (it cannot
            # tell who was heartbeating to the old one): the victims are
            # fenced one lease later, and only then left out of placement.
            survivors = {i for i in range(1, 6) if i not in victims}

            def fenced():
                return {n["id"] for n in alive[0].http_json("/api/v1/cluster/nodes") if n["state"] == "fenced"}

            wait_for(lambda: fenced() == set(victims), 20, "the victims fenced")
            # Fenced nodes stay in Kafka clients' broker lists (librdkafka
            # drops a broker missing from Metadata, and a group coordinator
            # it dropped never works again); they lead nothing.
            assert sorted(metadata(alive[0]).brokers) == [1, 2, 3, 4, 5]
            after = f"after-{uuid.uuid4().hex[:6]}"
            create_topic(alive[-1], after, 3)
            # Its partitions went to the three serving nodes only.
            wait_for(lambda: set(leaders(alive[0], after).values()) <= survivors and leaders(alive[0], after), 10,
                     "the new topic's leaders")
            for v in victims:
                c.restart(v)
            wait_for(lambda: sorted(metadata(c.node(victims[0])).brokers) == [1, 2, 3, 4, 5], 30, "both back")

            # Decommissioning node 5 moves every replica it holds (group
            # coordinators' partitions included) to the others, data and all.
            subprocess.run([fjord_bin(), "--server", f"http://{c.node(1).http}", "cluster", "decommission", "5"],
                           check=True, capture_output=True)

            def off_five():
                md = metadata(c.node(2))
                return all(5 not in p.replicas for t in md.topics.values() for p in t.partitions.values())

            wait_for(off_five, 60, "node 5 emptied")
            assert 5 not in leaders(c.node(1), topic).values()
            assert set(consume_all(c.node(3).bootstrap, topic, f"g2-{topic}", len(values))) == set(values)
            last = f"last-{uuid.uuid4().hex[:6]}"
            create_topic(c.node(4), last, 8, c)
            assert 5 not in leaders(c.node(1), last).values(), "a decommissioning node gets nothing new"
        finally:
            c.stop()
