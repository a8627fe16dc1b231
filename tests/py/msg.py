"""A two-phase message through the PyPI `dtmcli` client.

usage: msg.py DTM_URL BUSI_URL MODE

MODE:
  submit              prepare (with queryPrepared BUSI_URL/QueryPrepared), then submit
  prepare-only        prepare with timeout_to_fail 1 s and stop there, as a producer that died
                      after its local transaction: the server must ask queryPrepared
  do-and-submit       Msg.do_and_submit with a local transaction that succeeds
  do-and-submit-error Msg.do_and_submit with a local transaction that raises: the client asks
                      queryPrepared itself and aborts when it answers 409
Actions: TransOut, then TransIn. Prints one JSON line:
{"gid": ..., "payloads": {...}, "raised": <text of the exception do_and_submit re-raised, or null>}.
"""

import json
import sys

from dtmcli import msg, utils


class LocalTransactionError(Exception):
    pass


def main():
    dtm, busi, mode = sys.argv[1], sys.argv[2], sys.argv[3]
    gid = utils.gen_gid(dtm)
    out = {"user_id": 1, "amount": 30}
    into = {"user_id": 2, "amount": 30}
    m = msg.Msg(dtm, gid)
    m.add(out, busi + "/TransOut")
    m.add(into, busi + "/TransIn")
    query_prepared = busi + "/QueryPrepared"
    raised = None
    if mode == "submit":
        m.prepare(query_prepared)
        m.submit()
    elif mode == "prepare-only":
        # Msg has no setter for it; the field is part of the body dtmcli sends (trans_base.__dict__).
        m.trans_base.timeout_to_fail = 1
        m.prepare(query_prepared)
    elif mode == "do-and-submit":
        m.do_and_submit(query_prepared, lambda barrier: None)
    elif mode == "do-and-submit-error":

        def local_transaction(barrier):
            raise LocalTransactionError("local transaction lost")

        try:
            m.do_and_submit(query_prepared, local_transaction)
        except LocalTransactionError as e:
            raised = str(e)
    else:
        raise SystemExit("unknown mode " + mode)
    payloads = {"TransOut": json.dumps(out), "TransIn": json.dumps(into)}
    print(json.dumps({"gid": gid, "payloads": payloads, "raised": raised}))


if __name__ == "__main__":
    main()
