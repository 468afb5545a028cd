"""DocSift's Streamlit console: talks to the API over HTTP only."""
