"""DocSift console entry point: page navigation and the sidebar's API settings."""

import streamlit as st

from frontend.ui import render_sidebar

st.set_page_config(page_title="DocSift", page_icon=":material/description:", layout="wide")

navigation = st.navigation(
    [
        st.Page("app_pages/classifiers.py", title="Classifiers", icon=":material/label:"),
        st.Page("app_pages/live_test.py", title="Live test", icon=":material/science:"),
        st.Page("app_pages/review.py", title="Review", icon=":material/fact_check:"),
        st.Page("app_pages/evaluations.py", title="Evaluations", icon=":material/analytics:"),
        st.Page("app_pages/account.py", title="Account", icon=":material/account_balance:"),
    ]
)
render_sidebar()
navigation.run()
