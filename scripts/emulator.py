"""moto_server with DynamoDB's per-item write atomicity.

moto checks a ConditionExpression and then applies the write as separate Python steps with no
lock, and its server is threaded, so two concurrent conditional writes to one item can both
succeed (measured: 1 pair in 200 racing `attribute_not_exists OR owner = :me` claims). Real
DynamoDB serialises writes to an item, and the worker's lease depends on that. Holding one lock
over every DynamoDB backend call makes the emulator behave like the service for the lease tests;
SQS and Secrets Manager are untouched (an SQS long poll must not block DynamoDB).

Arguments are moto_server's (-H host -p port).
"""

import functools
import threading

from moto import server
from moto.dynamodb.models import DynamoDBBackend

_DYNAMODB = threading.RLock()


def _serialised(method):
    @functools.wraps(method)
    def call(*args, **kwargs):
        with _DYNAMODB:
            return method(*args, **kwargs)

    return call


for name, member in list(vars(DynamoDBBackend).items()):
    if callable(member) and not name.startswith("_"):
        setattr(DynamoDBBackend, name, _serialised(member))

if __name__ == "__main__":
    server.main()
