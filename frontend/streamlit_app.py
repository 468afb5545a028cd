"""DocSift console entry point: page navigation and the sidebar's API settings."""

import streamlit as st

from frontend.ui import render_sidebar

# A product's toolbar (no Deploy button), however the console is started; .streamlit/config.toml
# and `docsift dev` say the same.
st.set_option("client.toolbarMode", "minimal")
st.set_page_config(page_title="DocSift", page_icon=":material/description:", layout="wide")

navigation = st.navigation(
    {
        "Classify": [
            st.Page("app_pages/classifiers.py", title="Classifiers", icon=":material/label:"),
            st.Page("app_pages/live_test.py", title="Live test", icon=":material/science:"),
            st.Page("app_pages/review.py", title="Review", icon=":material/fact_check:"),
            st.Page("app_pages/split.py", title="Split", icon=":material/call_split:"),
            st.Page("app_pages/batches.py", title="Batches", icon=":material/stacks:"),
            st.Page("app_pages/evaluations.py", title="Evaluations", icon=":material/analytics:"),
        ],
        "Records": [
            st.Page("app_pages/documents.py", title="Documents", icon=":material/folder_open:"),
            st.Page("app_pages/history.py", title="History", icon=":material/history:"),
        ],
        "Settings": [
            st.Page("app_pages/webhooks.py", title="Webhooks", icon=":material/webhook:"),
            st.Page("app_pages/account.py", title="Account", icon=":material/account_balance:"),
        ],
    }
)
render_sidebar()
navigation.run()
