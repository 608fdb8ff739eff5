"""The app store's public routes (served at /api/appstore), one module per part of the store.

* ``vendors``: vendors, their developers and apps, manifest versions, the city's review, the catalog;
* ``installations``: installations at schools, teachers' requests, app credentials;
* ``launch``: launching apps (OIDC, LTI 1.3) and the LTI platform endpoints (no gateway token: LTI has its own);
* ``webhooks``: webhook deliveries, dead letters and replay for vendors;
* ``web``: the web pages (应用超市门户), behind their own sign-in session.
"""

from __future__ import annotations

from contracts.api.appstore import installations, launch, vendors, web, webhooks
from contracts.api.routes import ServiceApi

APPSTORE_API = ServiceApi(
    service="appstore",
    title="App store (应用超市)",
    routes=(*vendors.ROUTES, *installations.ROUTES, *launch.ROUTES, *webhooks.ROUTES, *web.ROUTES),
)
