"""A cluster of real `fjord serve` processes, for the multi-node suites
(tests/cluster, and the suites whose clients need a virtualenv of their
own, such as tests/rocketmq_grpc)."""

import contextlib
import tempfile
from pathlib import Path

from fjord_fixtures import stop_checked
from fjord_harness import FjordServer, free_port, wait_until

# Fast failure detection for tests: a node is fenced after 2 s of silence;
# a lost controller leader is replaced within 1.2 s (3 election timeouts),
# well inside the nodes' lease.
CLUSTER_ENV = {
    "FJORD_CLUSTER__CLUSTER_ID": "fjord-test-cluster",
    "FJORD_CLUSTER__HEARTBEAT_INTERVAL_MS": "300",
    "FJORD_CLUSTER__LEASE_MS": "2000",
    "FJORD_CLUSTER__ELECTION_TIMEOUT_MS": "400",
    # A follower 2 s behind leaves the in-sync replicas.
    "FJORD_CLUSTER__REPLICA_LAG_MS": "2000",
    # Consumers naming a rack read from the in-sync replica there (KIP-392);
    # node N is in rack rN.
    "FJORD_KAFKA__REPLICA_SELECTOR": "rack-aware",
}


class Cluster:
    """`n` nodes, the first `voters` of them controllers."""

    def __init__(self, root: Path, n: int = 3, voters: int = 3):
        internode = [free_port() for _ in range(n)]
        controllers = ",".join(f"{i + 1}@127.0.0.1:{internode[i]}" for i in range(voters))
        self.nodes = []
        for i in range(n):
            env = dict(CLUSTER_ENV)
            env["FJORD_NODE__ID"] = str(i + 1)
            env["FJORD_NODE__RACK"] = f"r{i + 1}"
            env["FJORD_CLUSTER__CONTROLLERS"] = controllers
            env["FJORD_CLUSTER__BIND"] = f"127.0.0.1:{internode[i]}"
            (root / f"node-{i + 1}").mkdir(parents=True, exist_ok=True)
            self.nodes.append(FjordServer(root / f"node-{i + 1}" / "data", kafka_port=free_port(), env=env))

    def start(self, timeout: float = 90.0) -> "Cluster":
        """Starts every node and waits until the cluster has formed: every
        node ready and every internal partition placed (the controller
        places the group coordinators, timer and pop shards once the
        controllers serve; until then group requests get retriable errors,
        which clients of some protocols surface to the application)."""
        try:
            for n in self.nodes:
                n.launch(n.kafka_port)
            for n in self.nodes:
                n.await_ready(timeout)
            for n in self.nodes:
                wait_until(lambda n=n: self._coordinators_placed(n), timeout, message=f"internal partitions on {n.http}")
        except BaseException:
            # A node that could not start (a port taken meanwhile) must not
            # leave the others running past the test.
            for n in self.nodes:
                n.stop()
            raise
        return self

    @staticmethod
    def _coordinators_placed(node: FjordServer) -> bool:
        for topic in ("__fjord_offsets", "__fjord_timer", "__fjord_pop"):
            try:
                parts = node.http_json(f"/api/v1/topics/{topic}")["partitions"]
            except Exception:  # noqa: BLE001 - not created yet
                return False
            if not parts or not all(p.get("leader") for p in parts):
                return False
        return True

    def node(self, node_id: int) -> FjordServer:
        return self.nodes[node_id - 1]

    def kill(self, node_id: int):
        """SIGKILL: no clean shutdown, as a crash."""
        n = self.node(node_id)
        n.proc.kill()
        n.proc.wait()
        n.proc = None

    def restart(self, node_id: int, timeout: float = 60.0):
        """Starts a stopped node again and waits until every running node
        sees it serving (registered anew and unfenced): until then the
        cluster counts one node less — new topics get fewer replicas by
        default — even though the node answers already."""
        n = self.node(node_id)
        n.launch(n.kafka_port)
        n.await_ready(timeout)
        for other in (o for o in self.nodes if o.running):
            wait_until(lambda o=other: self._serving(o, node_id), timeout, message=f"node {node_id} serving")

    @staticmethod
    def _serving(observer: FjordServer, node_id: int) -> bool:
        try:
            nodes = observer.http_json("/api/v1/cluster/nodes")
        except Exception:  # noqa: BLE001 - answering again in a moment
            return False
        return any(x["id"] == node_id and x["state"] == "serving" for x in nodes)

    @property
    def bootstrap(self) -> str:
        return ",".join(n.bootstrap for n in self.nodes if n.running)

    def stop(self):
        for n in self.nodes:
            stop_checked(n)


@contextlib.contextmanager
def running_cluster(prefix: str, n: int = 3, voters: int = 3):
    """A started cluster under a temporary directory, stopped (and checked
    for clean exits) afterwards."""
    with tempfile.TemporaryDirectory(prefix=prefix) as d:
        c = Cluster(Path(d), n=n, voters=voters).start()
        try:
            yield c
        finally:
            c.stop()
