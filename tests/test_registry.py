"""The soft-binding registry: content id → signed label, persistent, thread-safe, replace on re-record."""

from __future__ import annotations

import threading

from kzlabel import Label, Registry
from kzlabel.label import sign_label, verify_token


def test_record_lookup_persist_and_replace(tmp_path, signer, trust):
    path = tmp_path / "reg.sqlite"
    label = Label.create(owner="O", system="S")
    token = sign_label(label, signer)
    with Registry(path) as reg:
        assert reg.lookup(label.content_id) is None
        reg.record(label.content_id, token, "png")
        reg.record(label.content_id, token, "png")
        assert len(reg) == 1
    with Registry(path) as again:  # survives reopening
        stored = again.lookup(label.content_id)
    assert verify_token(stored, trust).label == label


def test_concurrent_records(signer):
    reg = Registry()
    labels = [Label.create(owner="O", system="S") for _ in range(40)]

    def work(chunk):
        for lab in chunk:
            reg.record(lab.content_id, sign_label(lab, signer), "jpeg")

    threads = [threading.Thread(target=work, args=(labels[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(reg) == 40 and all(reg.lookup(lab.content_id) for lab in labels)
