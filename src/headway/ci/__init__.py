"""CI/CD pipelines that test, deploy staging and production with headway (`headway ci init`)."""
