import unittest

from unhidra_worker import summarize
from unhidra_worker.registry import ModelError

CHAT = [
    {"from": "ann", "body": "We need to migrate the database before the deploy on Friday. lol", "ts": 1},
    {"from": "bob", "body": "ok", "ts": 2},
    {"from": "cy", "body": "The database migration script is ready. I tested the deploy on staging.", "ts": 3},
    {"from": "bob", "body": "Cool, lunch?", "ts": 4},
]


class SummarizeTest(unittest.TestCase):
    def test_known_answer(self):
        r = summarize.summarize({"messages": CHAT, "max_sentences": 2})
        self.assertEqual([s["text"] for s in r["sentences"]], [
            "We need to migrate the database before the deploy on Friday.",
            "The database migration script is ready.",
        ])
        self.assertEqual(r["summary"], "ann: We need to migrate the database before the deploy on Friday. "
                                       "cy: The database migration script is ready.")
        self.assertEqual(r["participants"][0], {"name": "bob", "messages": 2})
        self.assertEqual(r["keywords"][:2], ["database", "deploy"])
        self.assertEqual(r["message_count"], 4)

    def test_chit_chat_is_not_picked(self):
        r = summarize.summarize({"messages": CHAT, "max_sentences": 10})
        texts = [s["text"] for s in r["sentences"]]
        self.assertNotIn("ok", texts)
        self.assertNotIn("Cool, lunch?", texts)
        # Chronological order.
        self.assertEqual([s["message_index"] for s in r["sentences"]],
                         sorted(s["message_index"] for s in r["sentences"]))

    def test_duplicates_are_not_repeated(self):
        msgs = [{"from": "a", "body": "The build server is down again."}] * 3 + [
            {"from": "b", "body": "Restarting the build server now."},
            {"from": "c", "body": "The build cache filled the disk."}]
        r = summarize.summarize({"messages": msgs, "max_sentences": 2})
        texts = [s["text"] for s in r["sentences"]]
        self.assertEqual(len(texts), len(set(texts)))

    def test_deterministic(self):
        msgs = [{"from": f"u{i % 3}", "body": f"alpha beta gamma {i % 5}. delta epsilon."} for i in range(50)]
        self.assertEqual(summarize.summarize({"messages": msgs}), summarize.summarize({"messages": msgs}))

    def test_empty(self):
        r = summarize.summarize({"messages": []})
        self.assertEqual(r["summary"], "")
        self.assertEqual(r["sentences"], [])

    def test_hostile_inputs(self):
        bad = [None, {}, {"messages": "x"}, {"messages": [1]}, {"messages": [{"from": "a"}]},
               {"messages": [{"from": 1, "body": "x"}]}, {"messages": [{"body": "x", "ts": "now"}]},
               {"messages": [{"body": "x" * (summarize.MAX_BODY + 1)}]},
               {"messages": [{"body": "x"}] * (summarize.MAX_MESSAGES + 1)},
               {"messages": [{"body": "x" * summarize.MAX_BODY}] * 101},
               {"messages": [], "max_sentences": 0}, {"messages": [], "max_sentences": 100},
               {"messages": [], "max_sentences": True}]
        for inp in bad:
            with self.subTest(inp=str(inp)[:60]):
                with self.assertRaises(ModelError):
                    summarize.summarize(inp)


if __name__ == "__main__":
    unittest.main()
