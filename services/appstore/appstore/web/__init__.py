"""The app store's web pages (应用超市门户): sign-in through identity, the catalog, 我的应用, installing, requests."""
