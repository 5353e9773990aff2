"""NOTIFY sdrbot_widget on every change the widget shows (conversations/live.py): a widget ticket inserted or updated
('t:<id>'), a widget conversation updated ('c:<id>'). Delivered by PostgreSQL when the transaction commits."""

from django.db import migrations

FORWARD = r"""
CREATE FUNCTION sdrbot_widget_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('sdrbot_widget', TG_ARGV[0] || ':' || NEW.id);
    RETURN NULL;
END $$;
CREATE TRIGGER sdrbot_widget_ticket_notify AFTER INSERT OR UPDATE ON conversations_ticket
    FOR EACH ROW WHEN (NEW.channel = 'widget') EXECUTE FUNCTION sdrbot_widget_notify('t');
CREATE TRIGGER sdrbot_widget_conversation_notify AFTER UPDATE ON conversations_widgetconversation
    FOR EACH ROW EXECUTE FUNCTION sdrbot_widget_notify('c');
"""

BACKWARD = r"""
DROP TRIGGER IF EXISTS sdrbot_widget_conversation_notify ON conversations_widgetconversation;
DROP TRIGGER IF EXISTS sdrbot_widget_ticket_notify ON conversations_ticket;
DROP FUNCTION IF EXISTS sdrbot_widget_notify();
"""


class Migration(migrations.Migration):
    dependencies = [("conversations", "0007_merge_inbox_and_widget")]

    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
