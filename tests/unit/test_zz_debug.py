from contextlib import contextmanager
from hypothesis import given, settings, reproduce_failure
from hypothesis import strategies as st
from tests.fakes import MemoryStore
from tests.interleavings import run_scenario
import waituntil.sync.reconcile as rc
import tests.interleavings as il

REPORTS = []
orig = rc.reconcile_table


def spy(*a, **k):
    r = orig(*a, **k)
    REPORTS.append(r)
    return r


rc.reconcile_table = spy
orig2 = rc.check_keys


def spy2(*a, **k):
    r = orig2(*a, **k)
    REPORTS.append(("check", a[1], r))
    return r


rc.check_keys = spy2
STORES = []
SOURCES = []
import tests.fakes as tf

_init = tf.MemorySource.__init__


def _cap(self, *a, **k):
    _init(self, *a, **k)
    SOURCES.append(self)


tf.MemorySource.__init__ = _cap


@contextmanager
def _m():
    s = MemoryStore()
    STORES.append(s)
    yield s


@reproduce_failure(
    "6.170.17",
    b"AXicVVEJDgQhCKNsdDKzyf6p///UDpdoTLBQaIlSwYsCDr7oNjQJUA3BgmxBveZw8GM15bfIq/phlF3e7anSJd8TuBhXdiZY0/15R9Rndg22Xh2kkmkO7w58ssi6pktv0r6lrLmVbJksl5puf8kMa//w0+Vbsz1fe+Dw0eWNQ71j8tuLq31cgMeA/AGD+zkN",
)
@settings(database=None)
@given(data=st.data())
def test_x(data):
    REPORTS.clear()
    try:
        run_scenario(data, _m, heal=True)
    except AssertionError:
        from waituntil.read.cache_client import get_list

        s = STORES[-1]
        print("LIST", [(r["id"], r["rank"], r["updated_at"][-9:]) for r in get_list(s, "articles")])
        for k, r in sorted(SOURCES[-1].table.items()):
            print("SRC", k, r["rank"], r["updated_at"][-20:])
        head = s.heads["articles"]
        for pr in head.pages:
            for ref in s.nodes[pr.key].chunks:
                for e in s.nodes[ref.key].entries:
                    print("ENTRY", e.key, e.read_at_ns, e.position)
        for (t, k), v in s.rows.items():
            print(
                "ITEM",
                k,
                v.read_at_ns,
                v.position,
                sorted(v.positions),
                v.body and v.body.text[-30:],
            )
        print("ROWS", {k: (v.body is not None, v.read_at_ns) for (t, k), v in s.rows.items()})
        for r in REPORTS[-12:]:
            print("R", r)
        print("LEASES", s.leases, "HEAL", s.heal_states)
        import waituntil.sync.heal_ranges as hr

        orig_read = hr._read_keys

        def tr(part, tree, table, ports, result):
            before = set(result.keys)
            orig_read(part, tree, table, ports, result)
            print(
                "READ",
                part.lower,
                part.upper,
                part.supabase,
                part.cached,
                [n.key or n.chunk for n in part.nodes],
                result.keys - before,
            )

        hr._read_keys = tr
        orig_settle = hr._settle

        def ts(part, *a):
            out = orig_settle(part, *a)
            print(
                "SETTLE",
                part.lower,
                part.upper,
                "s",
                part.supabase,
                "c",
                part.cached,
                [n.key or n.chunk or n.page for n in part.nodes],
                "->",
                out and [(h.lower, h.upper) for h in out],
            )
            return out

        hr._settle = ts
        from waituntil.sync.ports import ConsumerPorts
        from tests.interleavings import _settings

        src = SOURCES[-1]
        order = src.order
        print("ORDER", order)
        r = hr.find_differences(
            "articles",
            s.heads["articles"],
            len(src.table),
            ConsumerPorts(_settings("rank.desc"), src, s, None),
            max_requests=100,
            max_keys=100,
        )
        print("FOUND", r.keys)
        raise
