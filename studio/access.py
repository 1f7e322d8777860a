"""Who is asking, read from a Gradio request: the rules themselves are the application layer's
(`mlm_core.service.access`)."""

from __future__ import annotations

import time

import gradio as gr

from mlm_core.service import access
from mlm_core.service.access import Visitor


def signed_in_profile(request: gr.Request | None) -> gr.OAuthProfile | None:
    """The Hugging Face profile of a visitor signed in with OAuth (`gr.LoginButton`), read from the signed session
    cookie as Gradio does when it injects a `gr.OAuthProfile` argument; None when not signed in or expired."""
    try:
        info = request.request.session.get("oauth_info")  # type: ignore[union-attr]
    except (AttributeError, AssertionError):  # no request, or no session middleware (OAuth not enabled)
        return None
    if not isinstance(info, dict) or not isinstance(info.get("userinfo"), dict):
        return None
    if (info.get("expires_at") or float("inf")) < time.time():
        return None
    try:
        return gr.OAuthProfile(info["userinfo"])
    except KeyError:
        return None


class Access(access.Access):
    """The application layer's rules, with the visitor read from a Gradio request."""

    def visitor(self, token: object, request: gr.Request | None) -> Visitor:
        """The visitor behind a request: its browser's secret, else (API clients) its session; the user signed in
        with Hugging Face (OAuth) or through the app's `auth=`."""
        user = getattr(signed_in_profile(request), "username", None) or getattr(request, "username", None)
        if request is None:
            return self.identify(token, user=user)
        peer = str(getattr(getattr(request, "client", None), "host", None) or "unknown")
        return self.identify(token, getattr(request, "session_hash", None), user, request.headers, peer)
