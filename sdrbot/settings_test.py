"""Settings for the test suite: the normal settings, with the embedded Redis's database 9 (unless ``REDIS_URL``
is set) so that tests and their Celery worker never share a queue with a running demo. ``SDRBOT_TEST_REDIS_DB``
(0-15) picks another database, so two test runs on one machine (two checkouts) never share a queue either."""

import os

from sdrbot.settings import *  # noqa: F403
from sdrbot.settings import env
from sdrbot import devservices

SDRBOT_ENV = "test"
REDIS_URL = env.str("REDIS_URL", default="") or devservices.redis_url(db=env.int("SDRBOT_TEST_REDIS_DB", default=9))
CACHES["default"]["LOCATION"] = REDIS_URL  # noqa: F405
CELERY_BROKER_URL = CELERY_RESULT_BACKEND = REDIS_URL
# one test database per pytest process, so parallel runs on one machine never drop each other's database
DATABASES["default"]["TEST"] = {"NAME": f"test_sdrbot_{os.getpid()}"}  # noqa: F405
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast logins in tests; never in production
# the CRM adapters' credentials in tests (the suite's Celery worker reads them too); never real secrets
CRM_WEBHOOK_SECRET = env.str("CRM_WEBHOOK_SECRET", default="whsec-test-0123456789")
CRM_HUBSPOT_TOKEN = env.str("CRM_HUBSPOT_TOKEN", default="pat-test-token")
# the whole suite calls the widget API from 127.0.0.1 within minutes; the throttle tests set their own low rates
WIDGET_THROTTLE_IP = WIDGET_THROTTLE_SITE = WIDGET_THROTTLE_CONVERSATION = "100000/min"
