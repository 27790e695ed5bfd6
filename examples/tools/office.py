"""A small stateful office: calendar, e-mail and files, as real Python tools.

Serve it with the ``python`` executor (``--executor python:examples/tools/office.py:Office``):
every episode gets a fresh ``Office``, and the calls really change its state, so multi-step
and multi-turn episodes can be verified against what the state became. Our own environment,
written for tooldojo; nothing here comes from BFCL.
"""

from __future__ import annotations

from typing import Any


class Office:
    """One person's calendar, mailbox and files, seeded with a little history."""

    def __init__(self) -> None:
        self.events: dict[str, dict[str, Any]] = {
            "evt_1": {
                "event_id": "evt_1",
                "title": "Team standup",
                "start": "2025-03-10T09:00",
                "end": "2025-03-10T09:15",
                "attendees": ["ana@example.com"],
                "location": "Room 2",
            }
        }
        self.emails: dict[str, dict[str, Any]] = {
            "msg_1": {
                "message_id": "msg_1",
                "from": "ana@example.com",
                "to": "me@example.com",
                "subject": "Budget review",
                "body": "Can we move the budget review to Friday?",
                "read": False,
                "folder": "inbox",
            }
        }
        self.files: dict[str, str] = {"/notes/todo.txt": "buy milk\ncall the bank\n"}
        self._counter = 1

    def _next(self, prefix: str) -> str:
        self._counter += 1
        return f"{prefix}_{self._counter}"

    # --- calendar ---------------------------------------------------------------------------

    def create_event(
        self,
        title: str,
        start: str,
        end: str,
        attendees: list[str] | None = None,
        location: str = "",
    ) -> dict[str, Any]:
        """Create a calendar event.

        Args:
            title: Event title, e.g. "Quarterly planning".
            start: Start as YYYY-MM-DDTHH:MM, e.g. "2025-03-14T10:00".
            end: End as YYYY-MM-DDTHH:MM, after the start, e.g. "2025-03-14T11:00".
            attendees: E-mail addresses to invite, e.g. ["ana@example.com"].
            location: Where it takes place, e.g. "Room 4".
        """
        if end <= start:
            return {"error": "the end must be after the start"}
        event_id = self._next("evt")
        self.events[event_id] = {
            "event_id": event_id,
            "title": title,
            "start": start,
            "end": end,
            "attendees": list(attendees or []),
            "location": location,
        }
        return dict(self.events[event_id])

    def list_events(self, day: str) -> dict[str, Any]:
        """List the events starting on one day.

        Args:
            day: The day as YYYY-MM-DD, e.g. "2025-03-10".
        """
        found = [e for e in self.events.values() if e["start"].startswith(day)]
        return {"events": sorted(found, key=lambda e: e["start"])}

    def get_event(self, event_id: str) -> dict[str, Any]:
        """Get one event by id.

        Args:
            event_id: Event id as returned by create_event or list_events, e.g. "evt_1".
        """
        event = self.events.get(event_id)
        return dict(event) if event else {"error": f"no event {event_id}"}

    def reschedule_event(self, event_id: str, start: str, end: str) -> dict[str, Any]:
        """Move an event to a new time.

        Args:
            event_id: Event id as returned by create_event or list_events, e.g. "evt_1".
            start: New start as YYYY-MM-DDTHH:MM, e.g. "2025-03-11T09:00".
            end: New end as YYYY-MM-DDTHH:MM, e.g. "2025-03-11T09:30".
        """
        event = self.events.get(event_id)
        if event is None:
            return {"error": f"no event {event_id}"}
        if end <= start:
            return {"error": "the end must be after the start"}
        event.update(start=start, end=end)
        return dict(event)

    def cancel_event(self, event_id: str) -> dict[str, Any]:
        """Cancel (delete) an event.

        Args:
            event_id: Event id as returned by create_event or list_events, e.g. "evt_1".
        """
        if self.events.pop(event_id, None) is None:
            return {"error": f"no event {event_id}"}
        return {"cancelled": event_id}

    # --- e-mail -----------------------------------------------------------------------------

    def send_email(self, to: str, subject: str, body: str) -> dict[str, Any]:
        """Send an e-mail.

        Args:
            to: Recipient address, e.g. "ana@example.com".
            subject: Subject line, e.g. "Lunch on Friday".
            body: Message text, e.g. "Are you free at noon?".
        """
        message_id = self._next("msg")
        self.emails[message_id] = {
            "message_id": message_id,
            "from": "me@example.com",
            "to": to,
            "subject": subject,
            "body": body,
            "read": True,
            "folder": "sent",
        }
        return {"message_id": message_id, "status": "sent"}

    def list_inbox(self, unread_only: bool = False) -> dict[str, Any]:
        """List the messages in the inbox (newest first).

        Args:
            unread_only: Only list messages not read yet.
        """
        found = [
            {k: m[k] for k in ("message_id", "from", "subject", "read")}
            for m in self.emails.values()
            if m["folder"] == "inbox" and (not unread_only or not m["read"])
        ]
        return {"messages": found[::-1]}

    def read_email(self, message_id: str) -> dict[str, Any]:
        """Open one message (marks it read).

        Args:
            message_id: Message id as returned by list_inbox or send_email, e.g. "msg_1".
        """
        message = self.emails.get(message_id)
        if message is None:
            return {"error": f"no message {message_id}"}
        message["read"] = True
        return dict(message)

    def reply_email(self, message_id: str, body: str) -> dict[str, Any]:
        """Reply to a message.

        Args:
            message_id: Message id as returned by list_inbox, e.g. "msg_1".
            body: Reply text, e.g. "Friday works for me".
        """
        original = self.emails.get(message_id)
        if original is None:
            return {"error": f"no message {message_id}"}
        return self.send_email(original["from"], f"Re: {original['subject']}", body)

    def search_emails(self, query: str) -> dict[str, Any]:
        """Find messages whose subject or body contains a text (case-insensitive).

        Args:
            query: Text to look for, e.g. "budget".
        """
        needle = query.lower()
        found = [
            {"message_id": m["message_id"], "subject": m["subject"], "folder": m["folder"]}
            for m in self.emails.values()
            if needle in m["subject"].lower() or needle in m["body"].lower()
        ]
        return {"messages": found}

    def delete_email(self, message_id: str) -> dict[str, Any]:
        """Delete a message.

        Args:
            message_id: Message id as returned by list_inbox or search_emails, e.g. "msg_1".
        """
        if self.emails.pop(message_id, None) is None:
            return {"error": f"no message {message_id}"}
        return {"deleted": message_id}

    # --- files ------------------------------------------------------------------------------

    def write_file(self, path: str, content: str) -> dict[str, Any]:
        """Create or overwrite a text file.

        Args:
            path: Absolute file path, e.g. "/notes/ideas.txt".
            content: The text to store, e.g. "call the plumber".
        """
        if not path.startswith("/"):
            return {"error": "paths must be absolute (start with /)"}
        self.files[path] = content
        return {"path": path, "size": len(content)}

    def read_text_file(self, path: str) -> dict[str, Any]:
        """Read a text file.

        Args:
            path: Absolute file path, e.g. "/notes/todo.txt".
        """
        if path not in self.files:
            return {"error": f"no file {path}"}
        return {"path": path, "content": self.files[path]}

    def list_files(self, folder: str = "/") -> dict[str, Any]:
        """List the files under a folder.

        Args:
            folder: Folder path, e.g. "/notes".
        """
        prefix = folder.rstrip("/") + "/"
        return {"files": sorted(p for p in self.files if p.startswith(prefix))}

    def append_to_file(self, path: str, content: str) -> dict[str, Any]:
        """Append text to an existing file.

        Args:
            path: Absolute file path, e.g. "/notes/todo.txt".
            content: Text to add at the end, e.g. "water the plants".
        """
        if path not in self.files:
            return {"error": f"no file {path}"}
        self.files[path] += content
        return {"path": path, "size": len(self.files[path])}

    def move_file(self, path: str, new_path: str) -> dict[str, Any]:
        """Move or rename a file.

        Args:
            path: Current absolute path, e.g. "/notes/todo.txt".
            new_path: New absolute path, e.g. "/archive/todo.txt".
        """
        if path not in self.files:
            return {"error": f"no file {path}"}
        if not new_path.startswith("/"):
            return {"error": "paths must be absolute (start with /)"}
        self.files[new_path] = self.files.pop(path)
        return {"path": new_path}

    def delete_file(self, path: str) -> dict[str, Any]:
        """Delete a file.

        Args:
            path: Absolute file path, e.g. "/notes/todo.txt".
        """
        if self.files.pop(path, None) is None:
            return {"error": f"no file {path}"}
        return {"deleted": path}
