"""`snnctl serve`: an OpenAI-compatible HTTP API and a web chat page over a language-model bundle.

Layers: `sessions` (kept recurrent states, LRU), `engine` (the one thread that runs the model, batching
every active conversation into each step), `protocol` (the OpenAI request/response shapes and error
bodies), `app` (the FastAPI routes and limits), `server` (uvicorn on a socket, what the plugin starts).
"""
