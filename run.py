"""Development server on the embedded defaults; production runs gunicorn 'app:create_app()'."""

import os

# The development entry point chooses development; anything else defaults to production.
os.environ.setdefault("APP_ENV", "development")

from app import create_app  # noqa: E402  (after APP_ENV is chosen)

app = create_app()

if __name__ == "__main__":
    app.run(host=os.environ.get("HOST", "127.0.0.1"), port=int(os.environ.get("PORT", "5000")))
