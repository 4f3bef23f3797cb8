from __future__ import annotations

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from rest_framework.authtoken.models import Token

from articles.demo_feeds import demo_feed_url, demo_feeds, demo_topics
from articles.models import Feed, Topic
from articles.services import add_feed


class Command(BaseCommand):
    help = "Load the starter topics and the demo feeds (served by this server); in demo mode also a demo admin."

    def handle(self, *args, **options) -> None:
        for topic in demo_topics():
            Topic.objects.get_or_create(name=topic["name"], defaults={"description": topic["description"]})
        for feed in demo_feeds():
            created, _ = add_feed(demo_feed_url(feed["file"]), title=feed["title"])
            # The demo's articles link to a made-up site (demo.newsrec.invalid): their feed text is all there is.
            Feed.objects.filter(pk=created.pk).update(full_text=Feed.FullText.NEVER)
        self.stdout.write(
            f"demo: {len(demo_topics())} topics, {len(demo_feeds())} feeds from {settings.DEMO_FEEDS_BASE_URL}"
        )
        if settings.DEMO_MODE:
            self._demo_admin()

    def _demo_admin(self) -> None:
        username, password = settings.DEMO_ADMIN_USERNAME, settings.DEMO_ADMIN_PASSWORD
        user, created = get_user_model().objects.get_or_create(
            username=username, defaults={"is_staff": True, "is_superuser": True}
        )
        if created:
            user.set_password(password)
            user.save()
        token, _ = Token.objects.get_or_create(user=user)
        self.stdout.write(
            self.style.WARNING(
                f"demo admin (demo mode only): user {username!r} password {password!r} — API token {token.key}"
            )
        )
